//! App installs (API.md §7, §9.2a): which Marketplace app is installed on which location and
//! since when, and the agency-wide (bulk) installs, which may cover locations created later.
//!
//! Guarantees: an app is installed on a location at most once (installing it again keeps the
//! first `installedAt`); a company install never installs anything by itself — the writer
//! that creates a location asks [`Installs::future_apps`] and installs what it returns.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::util::iso;

/// One app on one location.
#[derive(Debug, Clone, PartialEq)]
pub struct Install {
    pub installed_at: DateTime<Utc>,
    pub version_id: String,
    /// `planId` of a paid app; the sandbox sells no plans, so `""`.
    pub plan_id: String,
    pub on_trial: bool,
}

impl Install {
    pub fn new(installed_at: DateTime<Utc>, version_id: String) -> Self {
        Self {
            installed_at,
            version_id,
            plan_id: String::new(),
            on_trial: false,
        }
    }
}

/// An app installed agency-wide on a company.
#[derive(Debug, Clone, PartialEq)]
pub struct CompanyInstall {
    /// Locations created later get the app too.
    pub install_to_future: bool,
    pub version_id: String,
}

#[derive(Debug, Default)]
pub struct Installs {
    /// (app id, location id) → install.
    locations: BTreeMap<(String, String), Install>,
    /// (app id, company id) → agency-wide install.
    companies: BTreeMap<(String, String), CompanyInstall>,
}

fn key(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

impl Installs {
    pub fn get(&self, app_id: &str, location_id: &str) -> Option<&Install> {
        self.locations.get(&key(app_id, location_id))
    }

    /// Install `app_id` on `location_id`; `false` (and nothing changed) if it already was.
    pub fn install(&mut self, app_id: &str, location_id: &str, install: Install) -> bool {
        match self.locations.entry(key(app_id, location_id)) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(install);
                true
            }
        }
    }

    pub fn uninstall(&mut self, app_id: &str, location_id: &str) -> bool {
        self.locations.remove(&key(app_id, location_id)).is_some()
    }

    /// Remove every app from a location.
    pub fn uninstall_everything(&mut self, location_id: &str) {
        self.locations.retain(|(_, l), _| l != location_id);
    }

    pub fn company(&self, app_id: &str, company_id: &str) -> Option<&CompanyInstall> {
        self.companies.get(&key(app_id, company_id))
    }

    pub fn set_company(&mut self, app_id: &str, company_id: &str, install: CompanyInstall) {
        self.companies.insert(key(app_id, company_id), install);
    }

    pub fn remove_company(&mut self, app_id: &str, company_id: &str) -> bool {
        self.companies.remove(&key(app_id, company_id)).is_some()
    }

    /// The apps whose company install covers a location created in `company_id` now.
    pub fn future_apps(&self, company_id: &str) -> Vec<(String, CompanyInstall)> {
        self.companies
            .iter()
            .filter(|((_, c), i)| c == company_id && i.install_to_future)
            .map(|((a, _), i)| (a.clone(), i.clone()))
            .collect()
    }

    /// `{companies: [{appId, companyId, installToFutureLocations, versionId}], locations:
    /// [{appId, locationId, installedAt, versionId}]}` for the given locations and company.
    pub fn to_json(&self, company_id: &str, location_ids: &[&str]) -> Value {
        let companies: Vec<Value> = self
            .companies
            .iter()
            .filter(|((_, c), _)| c == company_id)
            .map(|((a, c), i)| {
                json!({"appId": a, "companyId": c, "installToFutureLocations": i.install_to_future,
                    "versionId": i.version_id})
            })
            .collect();
        let locations: Vec<Value> = self
            .locations
            .iter()
            .filter(|((_, l), _)| location_ids.contains(&l.as_str()))
            .map(|((a, l), i)| {
                json!({"appId": a, "locationId": l, "installedAt": iso(&i.installed_at),
                    "versionId": i.version_id})
            })
            .collect();
        json!({"companies": companies, "locations": locations})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_keeps_its_first_date_and_future_apps_are_per_company() {
        let t0 = super::super::util::now_ms();
        let mut i = Installs::default();
        assert!(i.install("app", "l1", Install::new(t0, "v1".into())));
        let later = t0 + chrono::Duration::seconds(5);
        assert!(!i.install("app", "l1", Install::new(later, "v2".into())));
        assert_eq!(i.get("app", "l1").map(|x| x.installed_at), Some(t0));
        i.set_company(
            "app",
            "co1",
            CompanyInstall {
                install_to_future: true,
                version_id: "v1".into(),
            },
        );
        i.set_company(
            "other",
            "co1",
            CompanyInstall {
                install_to_future: false,
                version_id: "v1".into(),
            },
        );
        assert_eq!(i.future_apps("co1").len(), 1);
        assert!(i.future_apps("co2").is_empty());
        i.uninstall_everything("l1");
        assert!(i.get("app", "l1").is_none());
    }
}
