//! State that survives: tenants, links, credentials, the inbox, the audit log, run
//! checkpoints, dead letters, and per-contact locks (DESIGN.md §4, §6).
//!
//! Error contract, for every method unless its doc says more: `Unavailable` when the database
//! cannot be reached or times out; `Corrupt` when stored data does not parse; `Unknown` for
//! anything else. Each method is atomic on its own.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use domain::{
    Business, Contact, EntityKind, Fingerprint, GhlContactId, LocationId, Note, Side, Task, Tenant,
    TenantId,
};

use crate::error::{ApiError, StoreError};

// ------------------------------------------------------------------------------ tenants

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// `NotFound` when there is no such tenant.
    async fn get(&self, id: &TenantId) -> Result<Tenant, StoreError>;

    /// The tenant of a GHL location (webhooks name only the location).
    async fn by_location(&self, location: &LocationId) -> Result<Option<Tenant>, StoreError>;

    async fn list(&self) -> Result<Vec<Tenant>, StoreError>;

    /// Insert or replace. `Conflict` when another tenant already has this location.
    async fn upsert(&self, tenant: &Tenant) -> Result<(), StoreError>;

    /// `NotFound` when there is no such tenant.
    async fn set_active(&self, id: &TenantId, active: bool) -> Result<(), StoreError>;

    /// The tenants of a GHL company (agency), in id order; empty when it has none.
    async fn by_company(&self, company_id: &str) -> Result<Vec<Tenant>, StoreError>;

    /// Apply an install (`active`) or uninstall of GHL time `at`: sets `active`, records `at`
    /// as the last lifecycle change and, when an inactive tenant is installed again, as its
    /// install time. Returns `false`, changing nothing, when the tenant's last lifecycle change
    /// is not older than `at` (a replayed or late event). `NotFound` when there is no such
    /// tenant.
    async fn apply_lifecycle(
        &self,
        id: &TenantId,
        active: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

// ------------------------------------------------------------------------------ links

/// The lifecycle of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// A worker claimed it to create the record on the other side; not created yet (or the
    /// outcome is unknown).
    Claimed,
    /// Both sides exist and are linked.
    Linked,
    /// Closed: the record was deleted on one side.
    Deleted,
}

/// The last agreed record of a link, of whichever kind it links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
pub enum BaseRecord {
    Contact(Box<Contact>),
    Task(Task),
    Note(Note),
    Business(Business),
    /// A rendered document (the profile note): only its fingerprint matters.
    Document {
        fingerprint: Fingerprint,
    },
    /// Links that carry no record (boards, comments, onboarding claims).
    None,
}

/// One link row.
///
/// Ids are strings because kinds differ (GHL ids are opaque strings, eKyte ids numbers). The
/// fingerprints are those of the side's projection of the normalised record as last written
/// to or agreed with that side:
/// `Fingerprint::of(&record.normalised(ctx).project(side))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: i64,
    pub tenant: TenantId,
    pub kind: EntityKind,
    pub ghl_id: Option<String>,
    pub ekyte_id: Option<String>,
    /// The GHL contact the record belongs to (tasks, notes, boards…), for listing.
    pub ghl_parent: Option<String>,
    /// The eKyte parent (workspace of a task, board of a note…).
    pub ekyte_parent: Option<String>,
    pub state: LinkState,
    pub base: BaseRecord,
    pub ghl_fp: Option<Fingerprint>,
    pub ekyte_fp: Option<Fingerprint>,
    /// Bumped on every change; updates check it (optimistic concurrency).
    pub version: i64,
    /// Who holds a claim, and since when.
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Link {
    pub fn fingerprint(&self, side: Side) -> Option<Fingerprint> {
        match side {
            Side::Ghl => self.ghl_fp,
            Side::Ekyte => self.ekyte_fp,
        }
    }

    pub fn id_on(&self, side: Side) -> Option<&str> {
        match side {
            Side::Ghl => self.ghl_id.as_deref(),
            Side::Ekyte => self.ekyte_id.as_deref(),
        }
    }
}

/// Which side's id a claim is keyed on: the side the record already exists on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimKey {
    pub tenant: TenantId,
    pub kind: EntityKind,
    pub side: Side,
    pub id: String,
    pub ghl_parent: Option<String>,
    pub ekyte_parent: Option<String>,
    /// The record about to be created, kept as the claim's base until the create completes:
    /// a holder that takes the claim over after a lost answer looks for the record as it was
    /// sent (its name or title may have changed since), not as it is now. `None` where the
    /// lookup needs nothing of it.
    pub pending: BaseRecord,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the claim and must create the record on the other side, then call
    /// [`LinkStore::complete`] (or [`LinkStore::release`] on failure).
    Claimed(Link),
    /// A claim older than the stale limit was taken over: the earlier holder may have created
    /// the record already, so look it up before creating.
    TakenOver(Link),
    /// Already linked (or closed): nothing to create.
    AlreadyLinked(Link),
    /// Another worker holds a fresh claim.
    ClaimedByOther { by: String, since: DateTime<Utc> },
}

/// What to store once the other side's record exists or a reconciliation settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUpdate {
    pub ghl_id: Option<String>,
    pub ekyte_id: Option<String>,
    pub ghl_parent: Option<String>,
    pub ekyte_parent: Option<String>,
    pub state: LinkState,
    pub base: BaseRecord,
    pub ghl_fp: Option<Fingerprint>,
    pub ekyte_fp: Option<Fingerprint>,
}

/// One outcome for [`LinkStore::complete_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub link_id: i64,
    pub expected_version: i64,
    pub update: LinkUpdate,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait LinkStore: Send + Sync {
    async fn by_ghl(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_id: &str,
    ) -> Result<Option<Link>, StoreError>;

    async fn by_ekyte(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ekyte_id: &str,
    ) -> Result<Option<Link>, StoreError>;

    /// Links of one kind under a GHL contact (its tasks, notes…), any state.
    async fn by_ghl_parent(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_parent: &str,
    ) -> Result<Vec<Link>, StoreError>;

    /// The links of one kind whose GHL id is among `ghl_ids`, any state, in no given order
    /// (a sweep reads a page's contacts at once). The default reads them one by one.
    async fn by_ghl_ids(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_ids: &[String],
    ) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::new();
        for id in ghl_ids {
            out.extend(self.by_ghl(tenant, kind, id).await?);
        }
        Ok(out)
    }

    /// Links of one kind under any of these GHL parents, any state, in no given order (a
    /// sweep reads the tasks or notes of many contacts at once). The default reads parent by
    /// parent.
    async fn by_ghl_parents(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_parents: &[String],
    ) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::new();
        for parent in ghl_parents {
            out.extend(self.by_ghl_parent(tenant, kind, parent).await?);
        }
        Ok(out)
    }

    /// Everything a contact's sync reads by the contact's GHL id, any state, in no given
    /// order: its contact link and its profile note's (GHL id = `contact`), and its tasks'
    /// and notes' (GHL parent = `contact`). One read where the store can; the default reads
    /// them kind by kind.
    async fn of_contact(&self, tenant: &TenantId, contact: &str) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::new();
        for kind in [EntityKind::Contact, EntityKind::ProfileNote] {
            out.extend(self.by_ghl(tenant, kind, contact).await?);
        }
        for kind in [EntityKind::Task, EntityKind::Note] {
            out.extend(self.by_ghl_parent(tenant, kind, contact).await?);
        }
        Ok(out)
    }

    /// Links of one kind under an eKyte parent (the tasks of a workspace…), any state.
    async fn by_ekyte_parent(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ekyte_parent: &str,
    ) -> Result<Vec<Link>, StoreError>;

    /// Links of one kind, in id order, after `after_id`, at most `limit`.
    async fn list(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Link>, StoreError>;

    /// Claim the right to create the counterpart of `key` (unique on tenant + kind + the
    /// side's id). Exactly one of many concurrent callers gets `Claimed`. A claim older than
    /// `stale_after` is taken over (`TakenOver`).
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        stale_after: Duration,
    ) -> Result<Claim, StoreError>;

    /// Record the outcome of a claim or a reconciliation. `Conflict` when `expected_version`
    /// is not the stored version (someone else changed the link), or when the new id is
    /// already linked to another row.
    async fn complete(
        &self,
        link_id: i64,
        expected_version: i64,
        update: &LinkUpdate,
    ) -> Result<Link, StoreError>;

    /// Record the outcomes of many claims or reconciliations at once (the records of one
    /// contact, at the end of its sync): one statement where the store can. Each item is
    /// checked like [`LinkStore::complete`]. Errors: `Conflict` when an item's version is not
    /// the stored one or a new id is already linked to another row, `NotFound` when a row is
    /// gone; on an error some items may have been written and others not, so the caller
    /// reads the links again before it relies on them (a retry does). Returns the links as
    /// written, in the items' order. The default completes them one by one.
    async fn complete_many(&self, items: &[Completion]) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for c in items {
            out.push(
                self.complete(c.link_id, c.expected_version, &c.update)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Give up a claim (the create failed for sure). Deletes a `Claimed` row; a linked row is
    /// left alone.
    async fn release(&self, link_id: i64) -> Result<(), StoreError>;

    /// How many claims of `kind` to create a record in eKyte (claimed, no eKyte id yet) were
    /// taken at or after `since`: creates under way, or ones whose outcome was lost and whose
    /// retry has not come yet.
    async fn pending_ekyte_creates(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Insert a link for records that exist on both sides already (found by `ExternalId`,
    /// say). `Conflict` when either id is already linked.
    async fn insert_linked(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        update: &LinkUpdate,
    ) -> Result<Link, StoreError>;
}

// ------------------------------------------------------------------------------ credentials

/// Whose credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Ghl,
    Ekyte,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ghl => "ghl",
            Self::Ekyte => "ekyte",
        }
    }
}

/// The secret part of a credential. Stored encrypted; never logged (`SecretString`).
#[derive(Debug, Clone)]
pub enum CredentialSecret {
    /// A GHL OAuth install: single-use rotating refresh token (API.md §7).
    GhlOAuth {
        access_token: SecretString,
        refresh_token: SecretString,
        scopes: Vec<String>,
        /// `Location` or `Company`.
        user_type: String,
        company_id: Option<String>,
    },
    /// A GHL Private Integration Token: static, no refresh.
    GhlPrivate { token: SecretString },
    /// eKyte: the company API key (public + automation APIs) and an optional personal MCP
    /// token (updates and comments).
    Ekyte {
        api_key: SecretString,
        mcp_token: Option<SecretString>,
    },
}

/// One stored credential.
#[derive(Debug, Clone)]
pub struct Credential {
    pub tenant: TenantId,
    pub provider: Provider,
    pub secret: CredentialSecret,
    /// When the access token expires (OAuth only).
    pub expires_at: Option<DateTime<Utc>>,
    /// Bumped on every write; a refresh under the lock writes version + 1.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// What a refresh returns to be stored.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub secret: CredentialSecret,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a locked refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

pub type RefreshFuture = Pin<Box<dyn Future<Output = Result<NewCredential, ApiError>> + Send>>;

/// Decides, on the credential read under the lock, whether it still needs refreshing.
pub type DuePredicate = Box<dyn Fn(&Credential) -> bool + Send + Sync>;

/// Refreshes a credential; called at most once, under the lock.
pub type Refresher = Box<dyn FnOnce(Credential) -> RefreshFuture + Send>;

/// One tenant's credential as a read gave it: decrypted, or why not.
pub type CredentialRead = Result<Credential, StoreError>;

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// `NotFound` when the tenant has no credential for the provider; `Crypto` when it cannot
    /// be decrypted with the configured keys.
    async fn get(&self, tenant: &TenantId, provider: Provider) -> Result<Credential, StoreError>;

    /// Insert or replace (encrypted with the current key).
    async fn put(
        &self,
        tenant: &TenantId,
        provider: Provider,
        credential: &NewCredential,
    ) -> Result<Credential, StoreError>;

    /// Remove (the app was uninstalled). No error when absent.
    async fn delete(&self, tenant: &TenantId, provider: Provider) -> Result<(), StoreError>;

    /// Take the tenant's credential lock, re-read the credential, and call `refresh` only if
    /// `due` still says so; store the new credential before releasing the lock. Returns the
    /// credential current after the call. Across processes on PostgreSQL; within the process
    /// on SQLite.
    async fn with_credential_lock(
        &self,
        tenant: &TenantId,
        provider: Provider,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError>;

    /// Every tenant's credential of `provider` in one read (the console's tenants page), as
    /// [`Self::get`] would give each: decrypted, or the error its row gives (`Crypto` for one
    /// that does not decrypt). Tenants without one are absent. In tenant order.
    async fn all(&self, provider: Provider) -> Result<Vec<(TenantId, CredentialRead)>, StoreError>;

    /// Remember how refreshing the tenant's credential last went: `Some(why)` it failed
    /// (shown to the operator), `None` it succeeded (the failure is forgotten). For eKyte,
    /// whose key never refreshes, it is how the last check of the key went. Storing a new
    /// credential ([`Self::put`]) forgets the failure too. The default keeps nothing.
    async fn note_refresh(
        &self,
        _tenant: &TenantId,
        _provider: Provider,
        _failure: Option<String>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every tenant's last refresh failure of `provider` (see [`Self::refresh_failure`]), in
    /// one read. The default knows none.
    async fn refresh_failures(
        &self,
        _provider: Provider,
    ) -> Result<Vec<(TenantId, RefreshFailure)>, StoreError> {
        Ok(Vec::new())
    }

    /// The last refresh failure remembered by [`Self::note_refresh`], if no refresh succeeded
    /// since. The default knows none.
    async fn refresh_failure(
        &self,
        _tenant: &TenantId,
        _provider: Provider,
    ) -> Result<Option<RefreshFailure>, StoreError> {
        Ok(None)
    }
}

/// A refresh that failed, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshFailure {
    pub at: DateTime<Utc>,
    pub error: String,
}

// ------------------------------------------------------------------------------ agencies

/// A GHL agency install: the company token its tenants mint their location tokens from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyInstall {
    pub company_id: String,
    /// The install covers the company's locations created later (`installToFutureLocations`).
    pub install_to_future: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// When the install (or its last refresh) was stored.
    pub updated_at: DateTime<Utc>,
}

/// Agency installs, one per GHL company. The token is sealed like every credential. A tenant
/// whose install kind is agency, with its company, and that has no GHL credential of its own,
/// reads the company's through [`CredentialStore::get`] and refreshes it through
/// [`CredentialStore::with_credential_lock`], under the company's lock: one refresh for all of
/// the company's tenants.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AgencyStore: Send + Sync {
    /// Insert or replace the company's token (sealed with the current key).
    async fn put_agency(
        &self,
        company_id: &str,
        credential: &NewCredential,
        install_to_future: bool,
    ) -> Result<AgencyInstall, StoreError>;

    /// `NotFound` when the company has no agency install.
    async fn agency_install(&self, company_id: &str) -> Result<AgencyInstall, StoreError>;

    /// Remove the company's token and its pending locations (the agency uninstalled the
    /// app). No error when absent.
    async fn delete_agency(&self, company_id: &str) -> Result<(), StoreError>;

    /// The company's token for the agency's own calls (listing its installed locations),
    /// refreshed first under the company's lock when `due` says so: the same lock and the same
    /// single refresh as its tenants' [`CredentialStore::with_credential_lock`]. The returned
    /// credential's `tenant` names no tenant. `NotFound` (in [`RefreshError::Store`]) when the
    /// company has no agency install.
    async fn with_agency_lock(
        &self,
        company_id: &str,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError>;

    /// Record a location an agency install approved that has no tenant yet (no eKyte company
    /// is known for it): it waits for `tenants map` or a mapping rule. Recording it again
    /// updates its name and keeps its first `since`.
    async fn put_pending(&self, pending: &PendingLocation) -> Result<(), StoreError>;

    /// Every pending location, in location order.
    async fn pending_locations(&self) -> Result<Vec<PendingLocation>, StoreError>;

    /// Forget a pending location (it got its tenant). No error when absent.
    async fn take_pending(&self, location: &LocationId) -> Result<(), StoreError>;
}

/// A location an agency install approved that has no tenant yet: its tenant is *pending*
/// until it has an eKyte company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingLocation {
    pub location_id: LocationId,
    /// The GHL company (agency) whose install approved it.
    pub company_id: String,
    pub name: Option<String>,
    /// When the install that approved it was seen first.
    pub since: DateTime<Utc>,
    /// Why no tenant was made for it (no rule, or the rule's tenant failed its checks).
    pub reason: String,
}

// ------------------------------------------------------------------------------ inbox

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Whether `key` from `source` was recorded for the tenant.
    async fn seen(&self, tenant: &TenantId, source: &str, key: &str) -> Result<bool, StoreError>;

    /// Record `key`; `true` when it was new, `false` when it was already there.
    async fn record(&self, tenant: &TenantId, source: &str, key: &str) -> Result<bool, StoreError>;

    /// Record many keys of `source` at once (keys already there are left as they are). On an
    /// error some may have been recorded; recording them again is harmless. The default
    /// records them one by one; a store should do it in one statement.
    async fn record_many(
        &self,
        source: &str,
        keys: &[(TenantId, String)],
    ) -> Result<(), StoreError> {
        for (tenant, key) in keys {
            self.record(tenant, source, key).await?;
        }
        Ok(())
    }

    /// Forget keys recorded before `before`; returns how many.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

// ------------------------------------------------------------------------------ audit log

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Update,
    Complete,
    Cancel,
    Reopen,
    Delete,
    Archive,
    Link,
    Skip,
    Conflict,
    Unsupported,
    Failed,
    /// An operator's action (the console): `reason` says who did what.
    Operator,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
            Self::Reopen => "reopen",
            Self::Delete => "delete",
            Self::Archive => "archive",
            Self::Link => "link",
            Self::Skip => "skip",
            Self::Conflict => "conflict",
            Self::Unsupported => "unsupported",
            Self::Failed => "failed",
            Self::Operator => "operator",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Create,
            Self::Update,
            Self::Complete,
            Self::Cancel,
            Self::Reopen,
            Self::Delete,
            Self::Archive,
            Self::Link,
            Self::Skip,
            Self::Conflict,
            Self::Unsupported,
            Self::Failed,
            Self::Operator,
        ]
        .into_iter()
        .find(|a| a.as_str() == raw)
    }
}

/// One audit entry: every write and every skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub tenant: TenantId,
    pub at: DateTime<Utc>,
    /// The side written to (or that would have been).
    pub target: Option<Side>,
    pub kind: EntityKind,
    pub action: AuditAction,
    /// The GHL contact the entry is about, for per-contact queries.
    pub contact: Option<GhlContactId>,
    pub ghl_id: Option<String>,
    pub ekyte_id: Option<String>,
    /// Names of the fields written (or in conflict).
    pub fields: Vec<String>,
    pub reason: Option<String>,
    pub message_id: Option<String>,
    pub dry_run: bool,
    /// The API calls the message that wrote the entry made, on each side (every entry of one
    /// message carries the same counts); `None` when not counted.
    #[serde(default)]
    pub calls: Option<ApiCalls>,
}

/// API calls made on each side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCalls {
    pub ghl: u32,
    pub ekyte: u32,
}

impl AuditEntry {
    /// A skip that concerns the tenant as a whole (an event or a message nothing here acts
    /// on), not one record.
    /// An operator's action on a tenant, with who did it.
    pub fn operator(tenant: &TenantId, at: DateTime<Utc>, who: &str, did: String) -> Self {
        Self {
            action: AuditAction::Operator,
            ..Self::tenant_skip(tenant, at, format!("{who}: {did}"), None)
        }
    }

    pub fn tenant_skip(
        tenant: &TenantId,
        at: DateTime<Utc>,
        reason: String,
        message_id: Option<String>,
    ) -> Self {
        Self {
            tenant: tenant.clone(),
            at,
            target: None,
            kind: EntityKind::Contact,
            action: AuditAction::Skip,
            contact: None,
            ghl_id: None,
            ekyte_id: None,
            fields: vec![],
            reason: Some(reason),
            message_id,
            dry_run: false,
            calls: None,
        }
    }
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub tenant: TenantId,
    pub contact: Option<GhlContactId>,
    /// Entries with an id below this one (paging backwards); `None` for the newest.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// How many failures of one tenant had one cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    pub tenant: TenantId,
    /// The failures' class ([`crate::failure::error_class`] of the reason).
    pub cause: String,
    pub count: u64,
    /// When the newest of them happened.
    pub last_at: DateTime<Utc>,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;

    /// Newest first.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// The tenant's entries whose message id starts with `prefix` (the plan of a console
    /// dry-run, whose messages share one), oldest first, at most `limit`. No error cases
    /// beyond the module's (`Unavailable`, `Corrupt`, `Unknown`).
    async fn by_message_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The `failed` entries of every tenant timed at or after `since` (dry runs included),
    /// counted per tenant and cause ([`crate::failure::error_class`] of the reason): writes
    /// that failed for good inside a message that was otherwise handled. In tenant order,
    /// then the most frequent cause first, then by cause; empty when there were none. No
    /// error cases beyond the module's (`Unavailable`, `Corrupt`, `Unknown`).
    async fn failures_since(&self, since: DateTime<Utc>) -> Result<Vec<FailureCount>, StoreError>;
}

// ------------------------------------------------------------------------------ runs

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Full,
    Incremental,
    Poll,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
            Self::Poll => "poll",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub pages: u64,
    pub seen: u64,
    pub enqueued: u64,
    pub skipped: u64,
    pub errors: u64,
    pub api_calls: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub id: i64,
    pub tenant: TenantId,
    pub kind: RunKind,
    pub status: RunStatus,
    /// Where the run got to (a contact search cursor); resumed after a crash.
    pub cursor: Option<String>,
    /// The lower bound of an incremental run (`dateUpdated >=`).
    pub since: Option<DateTime<Utc>>,
    pub counts: RunCounts,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RunStore: Send + Sync {
    /// The running run of this kind for the tenant (resume), or a new one starting at
    /// `since`.
    async fn start_or_resume(
        &self,
        tenant: &TenantId,
        kind: RunKind,
        since: Option<DateTime<Utc>>,
    ) -> Result<SyncRun, StoreError>;

    /// The tenant's running run of this kind, if there is one (a continuation checks it is
    /// still the one it continues).
    async fn running(
        &self,
        tenant: &TenantId,
        kind: RunKind,
    ) -> Result<Option<SyncRun>, StoreError>;

    /// Store progress after a page.
    async fn checkpoint(
        &self,
        run_id: i64,
        cursor: Option<String>,
        counts: RunCounts,
    ) -> Result<(), StoreError>;

    /// Set the run's status; a run that is no longer running forgets what it saw
    /// ([`Self::mark_seen`]) and the appointments it kept ([`Self::keep_appointments`]).
    async fn finish(
        &self,
        run_id: i64,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<(), StoreError>;

    /// Remember that the run's search returned these contacts (GHL ids). Marking one twice
    /// is harmless. A full sync marks each page before its checkpoint, so a run spread over
    /// many messages, or resumed after a crash, still knows every contact it saw.
    async fn mark_seen(&self, run_id: i64, ghl_ids: &[String]) -> Result<(), StoreError>;

    /// The tenant's linked contacts the run has not marked seen, as (link id, GHL id), in
    /// link id order after `after_id`, at most `limit`.
    async fn unseen_contacts(
        &self,
        tenant: &TenantId,
        run_id: i64,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError>;

    /// Keep appointments the run read from the location's calendars, for its later pages and
    /// messages (on any worker), until the run finishes. Keeping one twice is harmless.
    async fn keep_appointments(
        &self,
        run_id: i64,
        appointments: &[crate::ghl::GhlAppointment],
    ) -> Result<(), StoreError>;

    /// The appointments the run kept for these contacts (GHL ids), in no particular order.
    /// `Corrupt` when a kept row cannot be read back.
    async fn kept_appointments(
        &self,
        run_id: i64,
        contacts: &[String],
    ) -> Result<Vec<crate::ghl::GhlAppointment>, StoreError>;

    /// The newest completed run of a kind (its `started_at` is the next incremental cursor).
    async fn last_completed(
        &self,
        tenant: &TenantId,
        kind: RunKind,
    ) -> Result<Option<SyncRun>, StoreError>;

    /// Newest first. A full or incremental run's `counts.errors` includes its per-contact
    /// syncs that were dead-lettered (see [`crate::queue::sweep_message_id`]).
    async fn recent(&self, tenant: &TenantId, limit: u32) -> Result<Vec<SyncRun>, StoreError>;

    /// The newest run of each kind of every tenant, counted like [`Self::recent`] (a sweep's
    /// dead-lettered contact syncs are its errors), in a fixed number of statements whatever
    /// the number of tenants (the console's tenants page).
    async fn latest_runs(&self) -> Result<Vec<SyncRun>, StoreError>;
}

// ------------------------------------------------------------------------------ dead letters

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    pub tenant: Option<TenantId>,
    pub message_id: String,
    pub kind: String,
    /// The whole envelope as JSON, for replay.
    pub envelope: String,
    /// The error and its causes, outermost first.
    pub error_chain: Vec<String>,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub letter: NewDeadLetter,
    pub created_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// The dead letters of one tenant (or of none: a message that named no tenant) with one
/// error class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterGroup {
    pub tenant: Option<TenantId>,
    /// [`crate::failure::error_class`] of the letters' error chain.
    pub class: String,
    pub count: u64,
    /// The newest letter of the group (`dlq show` it for the whole chain).
    pub newest_id: i64,
    pub newest_at: DateTime<Utc>,
}

#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    async fn put(&self, letter: &NewDeadLetter) -> Result<i64, StoreError>;

    /// Newest first (by id), at most `limit`; replayed ones only when asked. With `before_id`,
    /// only letters with a smaller id: the next page is the one before the last id of this
    /// one.
    async fn list(
        &self,
        tenant: Option<TenantId>,
        include_replayed: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// How many letters (of one tenant, or all) there are per tenant and error class
    /// ([`crate::failure::error_class`] of the chain); replayed ones only when asked, and with
    /// `since` only those created at or after it. Letters without a tenant first, then in
    /// tenant order; within a tenant the largest group first, then by class. Empty when there
    /// are none. No error cases beyond the module's (`Unavailable`, `Corrupt`, `Unknown`).
    async fn summary(
        &self,
        tenant: Option<TenantId>,
        include_replayed: bool,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<DeadLetterGroup>, StoreError>;

    /// `NotFound` when there is no such id.
    async fn get(&self, id: i64) -> Result<DeadLetter, StoreError>;

    /// `NotFound` when there is no such id.
    async fn mark_replayed(&self, id: i64) -> Result<(), StoreError>;
}

// ------------------------------------------------------------------------------ observations

/// A location's (or company's) GHL rate budget as a worker last saw it: the five headers of
/// GHL's last answer (API.md §8), less what that worker sent since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateObservation {
    /// The location (or company) id the budget is kept for.
    pub resource: String,
    /// The burst limit and its window.
    pub max: u32,
    pub interval_ms: u64,
    /// Requests left in the window; `None` before a header said.
    pub remaining: Option<u32>,
    pub daily_limit: u64,
    pub daily_remaining: Option<u64>,
    /// 429s that worker received since it started.
    pub throttled: u64,
    pub at: DateTime<Utc>,
}

/// How long a tenant's messages waited in the queue before a worker took them, over one
/// reporting period of that worker (first deliveries only: a retry waits on purpose).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueObservation {
    pub tenant: TenantId,
    /// Messages taken in the period.
    pub taken: u64,
    /// The longest and the last wait, in milliseconds.
    pub longest_wait_ms: u64,
    pub last_wait_ms: u64,
    pub at: DateTime<Utc>,
}

/// What the workers observe and the console shows, kept in the store so that every
/// replica's observations reach the console's process. Each report replaces the previous
/// one of its subject. No error cases beyond the module's (`Unavailable`, `Corrupt`,
/// `Unknown`).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Observations: Send + Sync {
    async fn note_rates(&self, seen: &[RateObservation]) -> Result<(), StoreError>;

    /// The latest observation of each resource.
    async fn rates(&self) -> Result<Vec<RateObservation>, StoreError>;

    async fn note_queue(&self, seen: &[QueueObservation]) -> Result<(), StoreError>;

    /// The latest observation of each tenant.
    async fn queue_waits(&self) -> Result<Vec<QueueObservation>, StoreError>;
}

// ------------------------------------------------------------------------------ rate window

/// Whose rate window: GHL's Marketplace app and the resource it counts (a location, or a
/// company for agency calls).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowKey {
    pub app: String,
    pub resource: String,
}

/// One slot of a shared rate window, held by this process until released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSlot {
    pub key: WindowKey,
    pub slot: u32,
    /// Who holds it (the process's id), so that a release never frees a slot another process
    /// took after this one's hold expired.
    pub holder: String,
}

/// What a [`RateWindow::take`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Slot(WindowSlot),
    /// Every slot is held (or only the room left free remains): the next one frees in about
    /// this long, by the database's clock.
    Full {
        next_free_in: Duration,
    },
}

/// A rate window that every process of one deployment shares (issue 17: replicas sharing one
/// budget). The window has `max` slots; a request holds one from before it is sent until an
/// interval after its answer, so that at no moment do more than `max` of the deployment's
/// requests count in GHL's window, whatever its shape. Time is the database's, so the
/// processes' clocks need not agree.
///
/// Error contract: the module's (`Unavailable`, `Corrupt`, `Unknown`). A caller that cannot
/// reach the window must not send as if it held a slot: it falls back to what it can see
/// alone (GHL's headers), and a slot it took and could not release frees itself when its
/// hold expires.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RateWindow: Send + Sync {
    /// Take a free slot of `key`'s window of `max` slots, unless no more than `leave_free`
    /// are free (bulk calls leave room for real-time ones). The slot is held for `hold` at
    /// most (a process that crashes with it frees it then) or until released.
    async fn take(
        &self,
        key: &WindowKey,
        max: u32,
        leave_free: u32,
        hold: Duration,
        holder: &str,
    ) -> Result<Taken, StoreError>;

    /// The request of `slot` was answered: the slot frees `interval` from now. Releasing a
    /// slot that is no longer this holder's does nothing.
    async fn release(&self, slot: &WindowSlot, interval: Duration) -> Result<(), StoreError>;

    /// Release many answered slots at once, each as [`RateWindow::release`] would: one
    /// statement where the store can. The default releases them one by one.
    async fn release_many(
        &self,
        slots: &[WindowSlot],
        interval: Duration,
    ) -> Result<(), StoreError> {
        for slot in slots {
            self.release(slot, interval).await?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------ locks

/// Holds a per-contact lock until dropped (or released). Implementations release on drop too,
/// so an error or a cancelled task never leaves a lock behind.
#[async_trait]
pub trait LockGuard: Send {
    async fn release(self: Box<Self>);
}

/// Per-contact serialisation (DESIGN.md §4): two messages about one contact never reconcile
/// at once, across processes (PostgreSQL advisory lock) or within one (SQLite).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ContactLocks: Send + Sync {
    /// Wait for the lock on (tenant, key), at most `wait`. `Unavailable` on timeout.
    async fn lock(
        &self,
        tenant: &TenantId,
        key: &str,
        wait: Duration,
    ) -> Result<Box<dyn LockGuard>, StoreError>;
}

/// Whether the store answers (for readiness).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait StoreHealth: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
}
