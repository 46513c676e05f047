//! What the operator's read commands print: `status`, `tenants list` and `dlq list` (pages
//! and `--summary`). Each gathers typed rows first; the table and the `--json` form are two
//! renderings of the same rows, so they never disagree, and the JSON keys are the rows'
//! field names (stable: the e2e suite asserts them).
//!
//! Tables hold plain values (no JSON quoting), times as `YYYY-MM-DD HH:MM:SS UTC`. Nothing
//! secret is read into a row: a credential contributes only its kind and expiry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use domain::{Tenant, TenantId};
use ports::StoreError;
use ports::ekyte::Capabilities;
use ports::failure::error_class;
use ports::store::{
    CredentialSecret, CredentialStore, DeadLetter, DeadLetterGroup, FailureCount, PendingLocation,
    Provider, RunStatus, SyncRun,
};

use crate::queue::Depths;

/// A time as the tables print it.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

// ------------------------------------------------------------------------------ GHL token

/// What a tenant's GHL credential says about its expiry (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GhlToken {
    /// `oauth` (an app install), `private` (a Private Integration Token), `none`, `agency`
    /// (a pending location: the agency's token once it is mapped), or `unreadable` (it does not decrypt with the configured keys, or the store failed).
    pub kind: &'static str,
    /// When the OAuth access token expires (the worker refreshes it before then).
    pub expires_at: Option<DateTime<Utc>>,
    /// Why it is `unreadable`.
    pub problem: Option<String>,
    /// When the credential was last stored (installed or refreshed).
    pub last_refresh: Option<DateTime<Utc>>,
    /// The last refresh that failed, when none succeeded since.
    pub refresh_failure: Option<ports::store::RefreshFailure>,
}

impl GhlToken {
    /// Read the tenant's GHL credential and keep only its kind and expiry, with its last
    /// refresh failure.
    pub async fn of(store: &dyn CredentialStore, tenant: &TenantId) -> Self {
        let failure = store
            .refresh_failure(tenant, Provider::Ghl)
            .await
            .ok()
            .flatten();
        Self::without_failure(store, tenant).await.failed(failure)
    }

    /// With the refresh failure the caller read (for many tenants at once).
    pub fn failed(self, refresh_failure: Option<ports::store::RefreshFailure>) -> Self {
        Self {
            refresh_failure,
            ..self
        }
    }

    /// The credential's kind, expiry and time; no refresh failure.
    pub async fn without_failure(store: &dyn CredentialStore, tenant: &TenantId) -> Self {
        Self::read(store.get(tenant, Provider::Ghl).await)
    }

    /// The token as one read of the credential gave it; no refresh failure.
    pub fn read(read: Result<ports::store::Credential, StoreError>) -> Self {
        let mut last_refresh = None;
        let (kind, expires_at, problem) = match read {
            Ok(c) => {
                last_refresh = Some(c.updated_at);
                match c.secret {
                    CredentialSecret::GhlOAuth { .. } => ("oauth", c.expires_at, None),
                    CredentialSecret::GhlPrivate { .. } => ("private", None, None),
                    // A GHL row holding another provider's secret: a bug or a manual edit.
                    CredentialSecret::Ekyte { .. } => (
                        "unreadable",
                        None,
                        Some("the stored GHL credential is not a GHL one".to_owned()),
                    ),
                }
            }
            Err(StoreError::NotFound { .. }) => ("none", None, None),
            Err(e) => ("unreadable", None, Some(e.to_string())),
        };
        Self {
            kind,
            expires_at,
            problem,
            last_refresh,
            refresh_failure: None,
        }
    }

    /// The table's words, relative to `now`.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match (self.kind, self.expires_at) {
            ("oauth", Some(t)) if t > now => format!("expires {}", when(t)),
            ("oauth", Some(t)) => format!("expired {} (refreshed when next used)", when(t)),
            ("oauth", None) => "OAuth, expiry not recorded".to_owned(),
            ("private", _) => "does not expire (private token)".to_owned(),
            ("none", _) => "no GHL token".to_owned(),
            ("agency", _) => "the agency's, once mapped".to_owned(),
            _ => format!(
                "unreadable: {}",
                self.problem.as_deref().unwrap_or("unknown problem")
            ),
        }
    }
}

// ------------------------------------------------------------------------------ tenants list

/// One row of `tenants list`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    /// `active`, `uninstalled` (the app was removed from the location), `inactive` (added
    /// inactive, or paused, and never installed since) or `pending` (an agency install
    /// approved the location; it has no eKyte company yet: `tenants map`).
    pub state: &'static str,
    pub active: bool,
    /// `location` or `agency`.
    pub install_kind: &'static str,
    pub installed_at: Option<DateTime<Utc>>,
    pub location: String,
    /// The GHL company (agency) of the location, when known.
    pub ghl_company: Option<String>,
    /// `None` while pending.
    pub ekyte_company: Option<u64>,
    pub ghl_token: GhlToken,
    /// Why a pending location has no tenant yet.
    pub pending_reason: Option<String>,
    /// The GHL location's time zone, when read.
    pub ghl_timezone: Option<String>,
    pub workspace_per: String,
    pub selector: String,
    pub settings: domain::TenantSettings,
}

impl TenantRow {
    pub async fn of(tenant: &Tenant, credentials: &dyn CredentialStore) -> Self {
        Self::with_token(tenant, GhlToken::of(credentials, &tenant.id).await)
    }

    /// The row, with the GHL token the caller read.
    pub fn with_token(tenant: &Tenant, ghl_token: GhlToken) -> Self {
        Self {
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            state: tenant.state(),
            active: tenant.active,
            install_kind: tenant.install.kind.as_str(),
            installed_at: tenant.install.installed_at,
            location: tenant.location_id.to_string(),
            ghl_company: tenant.install.company_id.clone(),
            ekyte_company: Some(tenant.ekyte_company_id.get()),
            ghl_token,
            pending_reason: None,
            ghl_timezone: tenant.install.timezone.clone(),
            workspace_per: format!("{:?}", tenant.settings.workspace_per).to_lowercase(),
            selector: tenant.settings.selector.describe(),
            settings: tenant.settings.clone(),
        }
    }
}

impl TenantRow {
    /// A location an agency install approved that has no tenant yet, under the id `tenants
    /// map` gives its tenant by default. Its GHL calls will use the agency's token.
    pub fn pending(p: &PendingLocation) -> Self {
        let settings = domain::TenantSettings::default();
        Self {
            id: TenantId::parse(format!(
                "loc-{}",
                p.location_id.as_str().to_ascii_lowercase()
            ))
            .unwrap_or_else(|_| TenantId::parse("pending").expect("a valid id")),
            name: p.name.clone().unwrap_or_else(|| p.location_id.to_string()),
            state: "pending",
            active: false,
            install_kind: domain::InstallKind::Agency.as_str(),
            installed_at: Some(p.since),
            location: p.location_id.to_string(),
            ghl_company: Some(p.company_id.clone()),
            ekyte_company: None,
            ghl_token: GhlToken {
                kind: "agency",
                expires_at: None,
                problem: None,
                last_refresh: None,
                refresh_failure: None,
            },
            pending_reason: Some(p.reason.clone()),
            ghl_timezone: None,
            workspace_per: format!("{:?}", settings.workspace_per).to_lowercase(),
            selector: settings.selector.describe(),
            settings,
        }
    }
}

pub fn tenants_table(rows: &[TenantRow], now: DateTime<Utc>) -> String {
    let mut t = table(&[
        "id",
        "name",
        "state",
        "install",
        "GHL location",
        "GHL company",
        "eKyte company",
        "GHL token",
        "workspace per",
        "selector",
    ]);
    for r in rows {
        t.add_row([
            r.id.to_string(),
            r.name.clone(),
            r.state.to_owned(),
            r.install_kind.to_owned(),
            r.location.clone(),
            r.ghl_company.clone().unwrap_or_else(|| "-".to_owned()),
            // The location that takes the company's workspaces made without an ExternalId.
            match r.ekyte_company {
                None => "- (tenants map)".to_owned(),
                Some(c) if r.settings.ekyte.default_location => format!("{c} (default location)"),
                Some(c) => c.to_string(),
            },
            r.ghl_token.describe(now),
            r.workspace_per.clone(),
            r.selector.clone(),
        ]);
    }
    let pending: Vec<String> = rows
        .iter()
        .filter_map(|r| Some(format!("{}: {}", r.location, r.pending_reason.as_deref()?)))
        .collect();
    let mut out = format!("{t}\n{} tenant(s)", rows.len() - pending.len());
    if !pending.is_empty() {
        out.push_str(&format!(
            ", {} location(s) pending (map each with `tenants map --location <id> --ekyte-company <id> --settings <file>`):\n  {}",
            pending.len(),
            pending.join("\n  ")
        ));
    }
    out
}

// ------------------------------------------------------------------------------ dlq list

/// One row of `dlq list`.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub tenant: Option<TenantId>,
    pub message_id: String,
    pub kind: String,
    pub attempts: u32,
    /// The outermost error.
    pub error: Option<String>,
    /// Its class (`ports::failure::error_class`), as `--summary` groups it.
    pub class: String,
    pub created_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

impl From<&DeadLetter> for DeadLetterRow {
    fn from(d: &DeadLetter) -> Self {
        Self {
            id: d.id,
            tenant: d.letter.tenant.clone(),
            message_id: d.letter.message_id.clone(),
            kind: d.letter.kind.clone(),
            attempts: d.letter.attempts,
            error: d.letter.error_chain.first().cloned(),
            class: error_class(&d.letter.error_chain),
            created_at: d.created_at,
            replayed_at: d.replayed_at,
        }
    }
}

/// The table of one page, and the line under it: how many, and (when there are `more`,
/// older ones) how to ask for the next page.
pub fn dead_letters_page(rows: &[DeadLetterRow], more: bool) -> String {
    let mut t = table(&[
        "id",
        "tenant",
        "kind",
        "message",
        "attempts",
        "error class",
        "created",
        "replayed",
    ]);
    for r in rows {
        t.add_row([
            r.id.to_string(),
            r.tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            r.kind.clone(),
            r.message_id.clone(),
            r.attempts.to_string(),
            r.class.clone(),
            when(r.created_at),
            r.replayed_at.map(when).unwrap_or_default(),
        ]);
    }
    let count = format!("{} dead letter(s)", rows.len());
    let footer = match rows.last() {
        Some(last) if more => {
            format!("{count}; older ones: --before {}", last.id)
        }
        _ => count,
    };
    if rows.is_empty() {
        footer
    } else {
        format!("{t}\n{footer}")
    }
}

/// What `dlq list --summary --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterSummary {
    pub total: u64,
    pub groups: Vec<DeadLetterGroup>,
}

impl DeadLetterSummary {
    pub fn new(groups: Vec<DeadLetterGroup>) -> Self {
        Self {
            total: groups.iter().map(|g| g.count).sum(),
            groups,
        }
    }

    pub fn table(&self) -> String {
        let mut t = table(&["tenant", "error class", "count", "newest", "newest id"]);
        for g in &self.groups {
            t.add_row([
                g.tenant
                    .as_ref()
                    .map_or_else(|| "(no tenant)".to_owned(), ToString::to_string),
                g.class.clone(),
                g.count.to_string(),
                when(g.newest_at),
                g.newest_id.to_string(),
            ]);
        }
        let count = format!(
            "{} dead letter(s) in {} group(s)",
            self.total,
            self.groups.len()
        );
        if self.groups.is_empty() {
            count
        } else {
            format!("{t}\n{count}; `dlq show <newest id>` gives one's whole error chain")
        }
    }
}

// ------------------------------------------------------------------------------ status

/// One run in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub kind: &'static str,
    pub status: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub seen: u64,
    pub enqueued: u64,
}

fn run_status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
    }
}

impl From<&SyncRun> for RunRow {
    fn from(r: &SyncRun) -> Self {
        Self {
            kind: r.kind.as_str(),
            status: run_status(r.status),
            started_at: r.started_at,
            finished_at: r.finished_at,
            seen: r.counts.seen,
            enqueued: r.counts.enqueued,
        }
    }
}

/// Failures of one cause in the status window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureRow {
    /// `dead_letter` (a message given up on) or `failed_write` (one write that failed for
    /// good inside a message that was otherwise handled; the audit log has it).
    pub source: &'static str,
    pub cause: String,
    pub count: u64,
    pub last_at: DateTime<Utc>,
}

/// One tenant in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusTenant {
    pub tenant: TenantId,
    pub state: &'static str,
    pub active: bool,
    pub location: String,
    pub ekyte_company: u64,
    /// What the eKyte credentials allow; `null` when eKyte could not be asked.
    pub ekyte_capabilities: Option<Vec<&'static str>>,
    /// Newest first.
    pub recent_runs: Vec<RunRow>,
    /// Since the report's `failures_since`, the most frequent cause first.
    pub failures: Vec<FailureRow>,
}

/// What `status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub tenants: Vec<StatusTenant>,
    /// `null` when the broker could not be asked.
    pub queues: Option<Depths>,
    /// Dead letters not replayed yet, of every tenant (and of none).
    pub dead_letters: u64,
    /// The start of the failure window (an hour before the report, to the second).
    pub failures_since: DateTime<Utc>,
}

/// The failures of each tenant, from dead letters and failed audit entries.
pub fn failures_by_tenant(
    dead: &[DeadLetterGroup],
    writes: &[FailureCount],
) -> BTreeMap<TenantId, Vec<FailureRow>> {
    let mut out: BTreeMap<TenantId, Vec<FailureRow>> = BTreeMap::new();
    for g in dead {
        if let Some(t) = &g.tenant {
            out.entry(t.clone()).or_default().push(FailureRow {
                source: "dead_letter",
                cause: g.class.clone(),
                count: g.count,
                last_at: g.newest_at,
            });
        }
    }
    for f in writes {
        out.entry(f.tenant.clone()).or_default().push(FailureRow {
            source: "failed_write",
            cause: f.cause.clone(),
            count: f.count,
            last_at: f.last_at,
        });
    }
    for rows in out.values_mut() {
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.cause.cmp(&b.cause))
                .then_with(|| a.source.cmp(b.source))
        });
    }
    out
}

/// The words for what eKyte's credentials allow.
pub fn ekyte_access(caps: Option<&Capabilities>) -> String {
    match caps {
        None => "unknown (no readable eKyte credentials)".to_owned(),
        Some(c) if c.allowed.is_superset(&Capabilities::with_mcp().allowed) => {
            "full (API key + MCP token)".to_owned()
        }
        Some(c) if c.allowed.is_superset(&Capabilities::api_key_only().allowed) => {
            "read and create (no MCP token)".to_owned()
        }
        Some(c) if c.allowed.is_empty() => "none".to_owned(),
        Some(c) => c
            .allowed
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

impl StatusReport {
    /// The table, the failures under it, the queues and the dead letters. `caps` are the
    /// tenants' capabilities, in the order of `tenants`.
    pub fn render(&self, caps: &[Option<Capabilities>]) -> String {
        let mut t = table(&[
            "tenant",
            "state",
            "location",
            "eKyte company",
            "eKyte access",
            "last run",
            "failures (1h)",
        ]);
        for (i, r) in self.tenants.iter().enumerate() {
            let last = r
                .recent_runs
                .first()
                .map(|x| format!("{} {} {}", x.kind, x.status, when(x.started_at)))
                .unwrap_or_else(|| "none yet".to_owned());
            let failures: u64 = r.failures.iter().map(|f| f.count).sum();
            t.add_row([
                r.tenant.to_string(),
                r.state.to_owned(),
                r.location.clone(),
                r.ekyte_company.to_string(),
                ekyte_access(caps.get(i).and_then(Option::as_ref)),
                last,
                failures.to_string(),
            ]);
        }
        let mut out = vec![t.to_string()];
        let failing: Vec<&StatusTenant> = self
            .tenants
            .iter()
            .filter(|r| !r.failures.is_empty())
            .collect();
        if failing.is_empty() {
            out.push(format!(
                "failures since {}: none",
                when(self.failures_since)
            ));
        } else {
            out.push(format!(
                "failures since {}, by cause:",
                when(self.failures_since)
            ));
            for r in failing {
                for f in &r.failures {
                    let what = match f.source {
                        "dead_letter" => "dead letter(s)",
                        _ => "failed write(s)",
                    };
                    out.push(format!("  {}: {} {what}: {}", r.tenant, f.count, f.cause));
                }
            }
        }
        out.push(match &self.queues {
            Some(d) => format!(
                "queues: realtime {} · bulk {} · delayed {} · dead {}",
                d.realtime, d.bulk, d.delayed, d.dead
            ),
            None => "queues: unavailable".to_owned(),
        });
        out.push(format!("dead letters not replayed: {}", self.dead_letters));
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 4, h, 0, 0).unwrap()
    }

    #[test]
    fn a_token_is_described_by_its_kind_and_expiry() {
        let t = |kind, expires_at| GhlToken {
            kind,
            expires_at,
            problem: None,
            last_refresh: None,
            refresh_failure: None,
        };
        assert_eq!(
            t("oauth", Some(at(5))).describe(at(4)),
            "expires 2026-03-04 05:00:00 UTC"
        );
        assert!(
            t("oauth", Some(at(3)))
                .describe(at(4))
                .starts_with("expired")
        );
        assert_eq!(
            t("private", None).describe(at(4)),
            "does not expire (private token)"
        );
        assert_eq!(t("none", None).describe(at(4)), "no GHL token");
    }

    #[test]
    fn a_full_page_says_how_to_get_the_next() {
        let row = |id| DeadLetterRow {
            id,
            tenant: None,
            message_id: format!("m{id}"),
            kind: "ghl.event".into(),
            attempts: 1,
            error: None,
            class: "x".into(),
            created_at: at(1),
            replayed_at: None,
        };
        let page = dead_letters_page(&[row(9), row(7)], true);
        assert!(
            page.ends_with("2 dead letter(s); older ones: --before 7"),
            "{page}"
        );
        let last = dead_letters_page(&[row(3)], false);
        assert!(last.ends_with("\n1 dead letter(s)"), "{last}");
        assert_eq!(dead_letters_page(&[], false), "0 dead letter(s)");
    }

    #[test]
    fn failures_merge_per_tenant_most_frequent_first() {
        let acme = TenantId::parse("acme").unwrap();
        let dead = [
            DeadLetterGroup {
                tenant: Some(acme.clone()),
                class: "a".into(),
                count: 1,
                newest_id: 1,
                newest_at: at(1),
            },
            DeadLetterGroup {
                tenant: None,
                class: "b".into(),
                count: 9,
                newest_id: 2,
                newest_at: at(1),
            },
        ];
        let writes = [FailureCount {
            tenant: acme.clone(),
            cause: "c".into(),
            count: 2,
            last_at: at(2),
        }];
        let by = failures_by_tenant(&dead, &writes);
        assert_eq!(by.len(), 1, "letters without a tenant belong to none");
        let causes: Vec<_> = by[&acme].iter().map(|f| (f.source, f.count)).collect();
        assert_eq!(causes, [("failed_write", 2), ("dead_letter", 1)]);
    }
}
