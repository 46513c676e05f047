//! A tenant: one GHL location ↔ one eKyte company (M11), with its mapping and policy.

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
}

impl Default for EkyteMapping {
    fn default() -> Self {
        Self {
            task_type_id: None,
            user_email: None,
            timezone: "America/Sao_Paulo".to_owned(),
            board_title: "GHL".to_owned(),
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

    pub fn normalise_ctx(&self) -> NormaliseCtx {
        NormaliseCtx {
            phone_region: PhoneRegion::parse(&self.phone_region).unwrap_or_default(),
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
    pub active: bool,
    pub settings: TenantSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
