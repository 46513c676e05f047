//! A tenant: one GHL location ↔ one eKyte company (M11), with its mapping and policy.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{EkyteCompanyId, EkyteTaskTypeId, LocationId, TenantId};
use crate::normalise::PhoneRegion;
use crate::onboarding::{OnboardingTemplate, TemplateError};
use crate::policy::{PolicyError, SyncPolicy};
use crate::record::NormaliseCtx;
use crate::selector::Selector;

/// What an eKyte workspace stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspacePer {
    /// One workspace per GHL contact (the default).
    #[default]
    Contact,
    /// One workspace per GHL business, shared by its contacts.
    Business,
}

/// eKyte-side mapping settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EkyteMapping {
    /// Task type for tasks created from GHL; it decides the workflow and so the executors
    /// (eKyte API.md §4.2). Required before tasks can be created.
    pub task_type_id: Option<EkyteTaskTypeId>,
    /// The eKyte user (a member of the company) the automation API acts as.
    pub user_email: Option<String>,
    /// eKyte's date-times carry no zone; they are read and written in this IANA zone.
    pub timezone: String,
    /// Title of the per-workspace board that holds the profile note and GHL notes.
    pub board_title: String,
    /// When several GHL locations share the eKyte company: this location takes the
    /// workspaces made in eKyte without an `ExternalId` (one location per company should say
    /// so; a company with one location needs nothing).
    pub default_location: bool,
}

impl Default for EkyteMapping {
    fn default() -> Self {
        Self {
            task_type_id: None,
            user_email: None,
            timezone: "America/Sao_Paulo".to_owned(),
            board_title: "GHL".to_owned(),
            default_location: false,
        }
    }
}

/// Everything configurable per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    pub workspace_per: WorkspacePer,
    pub selector: Selector,
    pub onboarding: Vec<OnboardingTemplate>,
    pub policy: SyncPolicy,
    /// ISO region for phone numbers without a country code.
    pub phone_region: String,
    /// GHL custom field ids to carry in the canonical contact.
    pub custom_fields: Vec<String>,
    pub ekyte: EkyteMapping,
    /// M4 for the existing book too: give onboarding tasks to contacts added before the
    /// install (off: only contacts added at or after [`Install::installed_at`] get them).
    pub onboarding_backfill: bool,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            workspace_per: WorkspacePer::Contact,
            selector: Selector::default(),
            onboarding: Vec::new(),
            policy: SyncPolicy::default(),
            phone_region: "US".to_owned(),
            custom_fields: Vec::new(),
            ekyte: EkyteMapping::default(),
            onboarding_backfill: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Onboarding(#[from] TemplateError),
    #[error("phone_region {0:?} is not an ISO 3166-1 alpha-2 region code")]
    PhoneRegion(String),
    #[error("ekyte.timezone {0:?} is not an IANA time zone name")]
    Timezone(String),
}

impl TenantSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.policy.validate()?;
        OnboardingTemplate::validate_all(&self.onboarding)?;
        if PhoneRegion::parse(&self.phone_region).is_none() {
            return Err(SettingsError::PhoneRegion(self.phone_region.clone()));
        }
        if self.ekyte.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(SettingsError::Timezone(self.ekyte.timezone.clone()));
        }
        Ok(())
    }

    /// The settings a tenant cannot sync without, in words an operator acts on: a contact
    /// sync fails without `ekyte.user_email` (eKyte's automation API acts as a member), a task
    /// create without `ekyte.task_type_id`. Empty when nothing is missing.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self
            .ekyte
            .user_email
            .as_deref()
            .is_none_or(|e| e.trim().is_empty())
        {
            missing.push("ekyte.user_email (the eKyte member the automation API acts as)");
        }
        if self.ekyte.task_type_id.is_none() && self.policy.task.create_in_ekyte {
            missing.push("ekyte.task_type_id (the task type of tasks created in eKyte)");
        }
        missing
    }

    pub fn normalise_ctx(&self) -> NormaliseCtx {
        NormaliseCtx {
            phone_region: PhoneRegion::parse(&self.phone_region).unwrap_or_default(),
        }
    }
}

/// How the app came to a tenant's location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallKind {
    /// Installed on the one sub-account (or connected with a Private Integration Token).
    #[default]
    Location,
    /// Installed by the agency for many of its sub-accounts at once.
    Agency,
}

impl InstallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Location => "location",
            Self::Agency => "agency",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "location" => Some(Self::Location),
            "agency" => Some(Self::Agency),
            _ => None,
        }
    }
}

/// A tenant's install: where it came from and its lifecycle so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    pub kind: InstallKind,
    /// The GHL company (agency) the location belongs to, when known: company-wide events
    /// (an agency's UNINSTALL, LocationUpdate) name only it.
    pub company_id: Option<String>,
    /// When the app was (last) installed: onboarding is for contacts added from then on.
    pub installed_at: Option<DateTime<Utc>>,
    /// The GHL timestamp of the last lifecycle event applied (INSTALL, UNINSTALL): an event
    /// older than it is a replay or a late delivery and changes nothing.
    pub changed_at: Option<DateTime<Utc>>,
    /// The GHL location's IANA time zone, as GHL last said (`GET /locations/:id`, refreshed
    /// by LocationUpdate); `None` until read.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// What a lifecycle event does to a tenant, decided from its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleChange {
    /// Newer than the last change: apply it.
    Apply,
    /// Not newer than the last change (a replay, or a late delivery): ignore it.
    Stale,
}

impl Install {
    /// Whether an event at `at` is newer than the last lifecycle change applied.
    pub fn judge(&self, at: DateTime<Utc>) -> LifecycleChange {
        match self.changed_at {
            Some(last) if at <= last => LifecycleChange::Stale,
            _ => LifecycleChange::Apply,
        }
    }

    /// Whether a contact added at `added` is new to this install (onboarding, M4).
    pub fn is_new_contact(&self, added: Option<DateTime<Utc>>) -> bool {
        match (self.installed_at, added) {
            (Some(installed), Some(added)) => added >= installed,
            // No install time known: every contact counts as new (the behaviour before
            // installs were recorded). No `dateAdded`: not known to be new.
            (None, _) => true,
            (Some(_), None) => false,
        }
    }
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub location_id: LocationId,
    pub ekyte_company_id: EkyteCompanyId,
    /// Off when the app was uninstalled (or the tenant paused): its events are ignored.
    pub active: bool,
    pub settings: TenantSettings,
    #[serde(default)]
    pub install: Install,
}

impl Tenant {
    /// The tenant's state as an operator reads it.
    pub fn state(&self) -> &'static str {
        match (self.active, self.install.changed_at) {
            (true, _) => "active",
            (false, Some(_)) => "uninstalled",
            (false, None) => "inactive",
        }
    }
}

/// The active tenants of `tenant`'s eKyte company that its poll also reads, when it is the
/// company's poll lead (the first active tenant of the company in id order): one poll per
/// eKyte company per cycle reads the company's workspace listing once, for every location
/// mapped to it. Empty for any other tenant, and for a company with one tenant.
pub fn poll_peers<'a>(all: &'a [Tenant], tenant: &Tenant) -> Vec<&'a Tenant> {
    let mut company: Vec<&Tenant> = all
        .iter()
        .filter(|t| t.active && t.ekyte_company_id == tenant.ekyte_company_id)
        .collect();
    company.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    match company.first() {
        Some(lead) if lead.id == tenant.id => company.into_iter().skip(1).collect(),
        _ => Vec::new(),
    }
}

/// Whether `tenant`'s poll is its eKyte company's (see [`poll_peers`]): it is active and no
/// active tenant of the company comes before it in id order.
pub fn is_poll_lead(all: &[Tenant], tenant: &Tenant) -> bool {
    tenant.active
        && !all.iter().any(|t| {
            t.active
                && t.ekyte_company_id == tenant.ekyte_company_id
                && t.id.as_str() < tenant.id.as_str()
        })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn a_lifecycle_event_not_newer_than_the_last_change_is_stale() {
        let fresh = Install::default();
        assert_eq!(fresh.judge(at(1)), LifecycleChange::Apply);
        let uninstalled = Install {
            changed_at: Some(at(5)),
            ..Install::default()
        };
        assert_eq!(uninstalled.judge(at(4)), LifecycleChange::Stale);
        assert_eq!(uninstalled.judge(at(5)), LifecycleChange::Stale);
        assert_eq!(uninstalled.judge(at(6)), LifecycleChange::Apply);
    }

    #[test]
    fn only_contacts_added_at_or_after_the_install_are_new() {
        let i = Install {
            installed_at: Some(at(5)),
            ..Install::default()
        };
        assert!(!i.is_new_contact(Some(at(4))));
        assert!(i.is_new_contact(Some(at(5))));
        assert!(i.is_new_contact(Some(at(6))));
        assert!(!i.is_new_contact(None));
        assert!(Install::default().is_new_contact(Some(at(1))));
    }

    #[test]
    fn defaults_are_valid_and_errors_name_the_setting() {
        assert_eq!(TenantSettings::default().validate(), Ok(()));
        let bad = TenantSettings {
            phone_region: "XX".into(),
            ..TenantSettings::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("phone_region")
        );
        let bad = TenantSettings {
            ekyte: EkyteMapping {
                timezone: "Mars/Olympus".into(),
                ..EkyteMapping::default()
            },
            ..TenantSettings::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("ekyte.timezone")
        );
    }

    #[test]
    fn settings_deserialise_partially() {
        let s: TenantSettings = serde_json::from_str(
            r#"{"workspace_per":"business","selector":{"kind":"all"},"onboarding":[{"key":"welcome","title":"Welcome call"}]}"#,
        )
        .unwrap();
        assert_eq!(s.workspace_per, WorkspacePer::Business);
        assert_eq!(s.onboarding[0].due_in_hours, 24);
        assert_eq!(s.ekyte.timezone, "America/Sao_Paulo");
        assert!(serde_json::from_str::<TenantSettings>(r#"{"workspace":"x"}"#).is_err());
    }

    #[test]
    fn one_poll_reads_an_ekyte_company_for_all_its_active_tenants() {
        let make = |id: &str, company: u64, active: bool| Tenant {
            id: TenantId::parse(id).unwrap(),
            name: id.to_owned(),
            location_id: LocationId::parse(format!("loc{id}")).unwrap(),
            ekyte_company_id: EkyteCompanyId::new(company).unwrap(),
            active,
            settings: TenantSettings::default(),
            install: Install::default(),
        };
        let all = vec![
            make("c", 1, true),
            make("a", 1, false),
            make("b", 1, true),
            make("d", 1, true),
            make("x", 2, true),
        ];
        let ids = |v: Vec<&Tenant>| v.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
        // "a" is inactive: "b" leads company 1 and reads "c" and "d" too.
        assert!(is_poll_lead(&all, &all[2]));
        assert_eq!(ids(poll_peers(&all, &all[2])), ["c", "d"]);
        for follower in [&all[0], &all[1], &all[3]] {
            assert!(!is_poll_lead(&all, follower), "{}", follower.id);
            assert!(poll_peers(&all, follower).is_empty());
        }
        // Alone on its company: its own lead, no peers.
        assert!(is_poll_lead(&all, &all[4]));
        assert!(poll_peers(&all, &all[4]).is_empty());
    }
}
