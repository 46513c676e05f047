//! Conversions between the wire rows of `entity` and the domain types the ports speak, and
//! the text forms of the enums stored in the database. A stored value that does not parse is
//! `StoreError::Corrupt`, naming the table and column.

use chrono::{DateTime, SubsecRound, Utc};
use serde::de::DeserializeOwned;

use domain::{
    EkyteCompanyId, EntityKind, Fingerprint, GhlContactId, LocationId, Side, Tenant, TenantId,
};
use ports::StoreError;
use ports::store::{
    AuditAction, AuditEntry, AuditRecord, BaseRecord, DeadLetter, Link, LinkState, NewDeadLetter,
    Provider, RunCounts, RunKind, RunStatus, SyncRun,
};

use crate::entity::{audit_log, dead_letters, links, sync_runs, tenants};
use crate::error::bad_value;

/// The current time at the precision both backends store (microseconds), so a value read
/// back equals the value written on PostgreSQL and SQLite alike.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

pub(crate) fn link_state_str(s: LinkState) -> &'static str {
    match s {
        LinkState::Claimed => "claimed",
        LinkState::Linked => "linked",
        LinkState::Deleted => "deleted",
    }
}

fn parse_link_state(raw: &str) -> Option<LinkState> {
    [LinkState::Claimed, LinkState::Linked, LinkState::Deleted]
        .into_iter()
        .find(|s| link_state_str(*s) == raw)
}

pub(crate) fn run_status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
    }
}

fn parse_run_status(raw: &str) -> Option<RunStatus> {
    [RunStatus::Running, RunStatus::Completed, RunStatus::Failed]
        .into_iter()
        .find(|s| run_status_str(*s) == raw)
}

fn parse_run_kind(raw: &str) -> Option<RunKind> {
    [RunKind::Full, RunKind::Incremental, RunKind::Poll]
        .into_iter()
        .find(|k| k.as_str() == raw)
}

pub(crate) fn parse_provider(raw: &str) -> Option<Provider> {
    [Provider::Ghl, Provider::Ekyte]
        .into_iter()
        .find(|p| p.as_str() == raw)
}

fn parse_side(raw: &str) -> Option<Side> {
    [Side::Ghl, Side::Ekyte]
        .into_iter()
        .find(|s| s.as_str() == raw)
}

pub(crate) fn json<T: serde::Serialize>(
    what: &str,
    value: &T,
) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| {
        StoreError::Unknown(anyhow::Error::new(e).context(format!("serialise {what}")))
    })
}

fn from_json<T: DeserializeOwned>(
    table: &str,
    column: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| bad_value(table, column, e))
}

fn parse<T, E: std::fmt::Display>(
    table: &str,
    column: &str,
    result: Result<T, E>,
) -> Result<T, StoreError> {
    result.map_err(|e| bad_value(table, column, e))
}

fn known<T>(table: &str, column: &str, raw: &str, value: Option<T>) -> Result<T, StoreError> {
    value.ok_or_else(|| bad_value(table, column, format!("unknown value {raw:?}")))
}

fn tenant_id(table: &str, raw: &str) -> Result<TenantId, StoreError> {
    parse(table, "tenant_id", TenantId::parse(raw))
}

pub(crate) fn tenant(row: tenants::Model) -> Result<Tenant, StoreError> {
    const T: &str = "tenants";
    let company = u64::try_from(row.ekyte_company_id)
        .map_err(|e| bad_value(T, "ekyte_company_id", e))
        .and_then(|n| parse(T, "ekyte_company_id", EkyteCompanyId::new(n)))?;
    Ok(Tenant {
        id: parse(T, "id", TenantId::parse(row.id))?,
        name: row.name,
        location_id: parse(T, "location_id", LocationId::parse(row.location_id))?,
        ekyte_company_id: company,
        active: row.active,
        settings: from_json(T, "settings", row.settings)?,
        install: domain::Install {
            kind: known(
                T,
                "install_kind",
                &row.install_kind,
                domain::InstallKind::parse(&row.install_kind),
            )?,
            company_id: row.ghl_company_id,
            installed_at: row.installed_at,
            changed_at: row.lifecycle_at,
            timezone: row.ghl_timezone,
        },
    })
}

fn fingerprint(column: &str, raw: Option<String>) -> Result<Option<Fingerprint>, StoreError> {
    raw.map(|s| parse("links", column, s.parse::<Fingerprint>()))
        .transpose()
}

pub(crate) fn link(row: links::Model) -> Result<Link, StoreError> {
    const T: &str = "links";
    Ok(Link {
        id: row.id,
        tenant: tenant_id(T, &row.tenant_id)?,
        kind: known(T, "kind", &row.kind, EntityKind::parse(&row.kind))?,
        ghl_id: row.ghl_id,
        ekyte_id: row.ekyte_id,
        ghl_parent: row.ghl_parent,
        ekyte_parent: row.ekyte_parent,
        state: known(T, "state", &row.state, parse_link_state(&row.state))?,
        base: from_json::<BaseRecord>(T, "base", row.base)?,
        ghl_fp: fingerprint("ghl_fp", row.ghl_fp)?,
        ekyte_fp: fingerprint("ekyte_fp", row.ekyte_fp)?,
        version: row.version,
        claimed_by: row.claimed_by,
        claimed_at: row.claimed_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(crate) fn audit(row: audit_log::Model) -> Result<AuditRecord, StoreError> {
    const T: &str = "audit_log";
    let target = row
        .target
        .as_deref()
        .map(|raw| known(T, "target", raw, parse_side(raw)))
        .transpose()?;
    let contact = row
        .contact_id
        .map(|raw| parse(T, "contact_id", GhlContactId::parse(raw)))
        .transpose()?;
    Ok(AuditRecord {
        id: row.id,
        entry: AuditEntry {
            tenant: tenant_id(T, &row.tenant_id)?,
            at: row.at,
            target,
            kind: known(T, "kind", &row.kind, EntityKind::parse(&row.kind))?,
            action: known(T, "action", &row.action, AuditAction::parse(&row.action))?,
            contact,
            ghl_id: row.ghl_id,
            ekyte_id: row.ekyte_id,
            fields: from_json(T, "fields", row.fields)?,
            reason: row.reason,
            message_id: row.message_id,
            dry_run: row.dry_run,
            calls: match (row.ghl_calls, row.ekyte_calls) {
                (None, None) => None,
                (g, e) => Some(ports::store::ApiCalls {
                    ghl: g.map_or(Ok(0), |n| {
                        u32::try_from(n).map_err(|e| crate::error::bad_value(T, "ghl_calls", e))
                    })?,
                    ekyte: e.map_or(Ok(0), |n| {
                        u32::try_from(n).map_err(|e| crate::error::bad_value(T, "ekyte_calls", e))
                    })?,
                }),
            },
        },
    })
}

/// `RunCounts` as stored: its own serde form, so a field added to the port type later reads
/// old rows as zero instead of failing.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub(crate) struct StoredCounts {
    pages: u64,
    seen: u64,
    enqueued: u64,
    skipped: u64,
    errors: u64,
    api_calls: u64,
}

impl From<RunCounts> for StoredCounts {
    fn from(c: RunCounts) -> Self {
        Self {
            pages: c.pages,
            seen: c.seen,
            enqueued: c.enqueued,
            skipped: c.skipped,
            errors: c.errors,
            api_calls: c.api_calls,
        }
    }
}

impl From<StoredCounts> for RunCounts {
    fn from(c: StoredCounts) -> Self {
        Self {
            pages: c.pages,
            seen: c.seen,
            enqueued: c.enqueued,
            skipped: c.skipped,
            errors: c.errors,
            api_calls: c.api_calls,
        }
    }
}

pub(crate) fn run(row: sync_runs::Model) -> Result<SyncRun, StoreError> {
    const T: &str = "sync_runs";
    Ok(SyncRun {
        id: row.id,
        tenant: tenant_id(T, &row.tenant_id)?,
        kind: known(T, "kind", &row.kind, parse_run_kind(&row.kind))?,
        status: known(T, "status", &row.status, parse_run_status(&row.status))?,
        cursor: row.cursor,
        since: row.since,
        counts: from_json::<StoredCounts>(T, "counts", row.counts)?.into(),
        error: row.error,
        started_at: row.started_at,
        updated_at: row.updated_at,
        finished_at: row.finished_at,
    })
}

pub(crate) fn dead_letter(row: dead_letters::Model) -> Result<DeadLetter, StoreError> {
    const T: &str = "dead_letters";
    Ok(DeadLetter {
        id: row.id,
        letter: NewDeadLetter {
            tenant: row
                .tenant_id
                .as_deref()
                .map(|raw| tenant_id(T, raw))
                .transpose()?,
            message_id: row.message_id,
            kind: row.kind,
            envelope: row.envelope,
            error_chain: from_json(T, "error_chain", row.error_chain)?,
            attempts: u32::try_from(row.attempts).map_err(|e| bad_value(T, "attempts", e))?,
        },
        created_at: row.created_at,
        replayed_at: row.replayed_at,
    })
}
