//! Onboarding task templates (M4): the tasks a contact gets in GHL when it is linked for the
//! first time.
//!
//! Templates are data; [`OnboardingTemplate::instantiate`] turns one into a task due a fixed
//! time after the link. "Exactly once" is not this module's job: the engine claims one link
//! per (contact, template key) before creating, so a repeated or concurrent event finds the
//! claim taken.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::Task;
use crate::normalise;
use crate::record::TaskStatus;

/// One onboarding task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingTemplate {
    /// Stable key; part of the claim, so renaming a template's title does not re-create it.
    pub key: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// Due this many hours after the contact is first linked.
    #[serde(default = "default_due_hours")]
    pub due_in_hours: u32,
}

fn default_due_hours() -> u32 {
    24
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("onboarding template #{index} has an empty key")]
    EmptyKey { index: usize },
    #[error("onboarding template {key:?} has an empty title")]
    EmptyTitle { key: String },
    #[error("two onboarding templates share the key {key:?}")]
    DuplicateKey { key: String },
    #[error("onboarding template key {key:?} may hold only a-z, 0-9, '-' and '_'")]
    BadKey { key: String },
}

impl OnboardingTemplate {
    /// The task this template creates for a contact linked at `linked_at`.
    pub fn instantiate(&self, linked_at: DateTime<Utc>) -> Task {
        Task {
            title: normalise::line(&self.title),
            body: normalise::opt_text_body(self.body.as_deref()),
            due: Some(normalise::instant(
                linked_at + Duration::hours(i64::from(self.due_in_hours)),
            )),
            status: TaskStatus::Open,
            assignee: None,
            updated_at: None,
        }
    }

    /// Check a tenant's list: keys present, well-formed and unique, titles present.
    pub fn validate_all(templates: &[Self]) -> Result<(), TemplateError> {
        let mut seen = std::collections::BTreeSet::new();
        for (index, t) in templates.iter().enumerate() {
            if t.key.is_empty() {
                return Err(TemplateError::EmptyKey { index });
            }
            if !t
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(TemplateError::BadKey { key: t.key.clone() });
            }
            if normalise::line(&t.title).is_none() {
                return Err(TemplateError::EmptyTitle { key: t.key.clone() });
            }
            if !seen.insert(&t.key) {
                return Err(TemplateError::DuplicateKey { key: t.key.clone() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(key: &str, title: &str) -> OnboardingTemplate {
        OnboardingTemplate {
            key: key.into(),
            title: title.into(),
            body: Some("Say hello".into()),
            due_in_hours: 48,
        }
    }

    #[test]
    fn instantiation_offsets_the_due_date() {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 10, 30, 15).unwrap();
        let task = t("welcome", "  Welcome call ").instantiate(at);
        assert_eq!(task.title.as_deref(), Some("Welcome call"));
        assert_eq!(
            task.due,
            Some(Utc.with_ymd_and_hms(2026, 5, 3, 10, 30, 15).unwrap())
        );
        assert_eq!(task.status, TaskStatus::Open);
    }

    #[test]
    fn lists_are_validated() {
        assert!(OnboardingTemplate::validate_all(&[t("a", "x"), t("b", "y")]).is_ok());
        assert_eq!(
            OnboardingTemplate::validate_all(&[t("a", "x"), t("a", "y")]),
            Err(TemplateError::DuplicateKey { key: "a".into() })
        );
        assert!(OnboardingTemplate::validate_all(&[t("A b", "x")]).is_err());
        assert!(OnboardingTemplate::validate_all(&[t("a", "  ")]).is_err());
    }
}
