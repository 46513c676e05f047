//! Which GHL contacts sync: all of them, those with a tag, or those that match a rule.
//!
//! A selector is data (it lives in the tenant's configuration) plus [`Selector::matches`].
//! Tags compare in canonical form (trimmed, lower-case), as contacts' tags are normalised.

use serde::{Deserialize, Serialize};

use crate::entities::Contact;
use crate::normalise;

/// Conditions that must all hold. Empty lists do not constrain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectorRule {
    /// At least one of these tags.
    pub any_tags: Vec<String>,
    /// Every one of these tags.
    pub all_tags: Vec<String>,
    /// None of these tags.
    pub none_tags: Vec<String>,
    /// Only contacts with an e-mail address.
    pub require_email: bool,
    /// Only contacts linked to a GHL business.
    pub require_business: bool,
}

/// Which contacts a tenant syncs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Selector {
    /// Every contact of the location.
    All,
    /// Contacts that carry this tag (DESIGN.md §2: `ekyte` by default).
    Tag { tag: String },
    /// Contacts that match a rule.
    Rule(SelectorRule),
}

impl Default for Selector {
    fn default() -> Self {
        Self::Tag {
            tag: "ekyte".to_owned(),
        }
    }
}

impl Selector {
    /// Whether `contact` (normalised) is selected.
    pub fn matches(&self, contact: &Contact) -> bool {
        let has = |t: &String| {
            normalise::tags([t])
                .first()
                .is_some_and(|t| contact.tags.binary_search(t).is_ok())
        };
        match self {
            Self::All => true,
            Self::Tag { tag } => has(tag),
            Self::Rule(r) => {
                (r.any_tags.is_empty() || r.any_tags.iter().any(has))
                    && r.all_tags.iter().all(has)
                    && !r.none_tags.iter().any(has)
                    && (!r.require_email || contact.email.is_some())
                    && (!r.require_business || contact.business_id.is_some())
            }
        }
    }

    /// A short text for audit entries ("not selected by tag ekyte").
    pub fn describe(&self) -> String {
        match self {
            Self::All => "all contacts".to_owned(),
            Self::Tag { tag } => format!("tag {tag}"),
            Self::Rule(_) => "the tenant's selector rule".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::GhlBusinessId;

    fn with_tags(tags: &[&str]) -> Contact {
        Contact {
            tags: normalise::tags(tags),
            ..Contact::default()
        }
    }

    #[test]
    fn tag_selector_ignores_case() {
        let s = Selector::Tag {
            tag: "EKyte ".into(),
        };
        assert!(s.matches(&with_tags(&["ekyte", "vip"])));
        assert!(!s.matches(&with_tags(&["vip"])));
        assert!(Selector::All.matches(&with_tags(&[])));
    }

    #[test]
    fn rules_combine() {
        let s = Selector::Rule(SelectorRule {
            any_tags: vec!["a".into(), "b".into()],
            none_tags: vec!["lost".into()],
            require_business: true,
            ..SelectorRule::default()
        });
        let mut c = with_tags(&["b"]);
        assert!(!s.matches(&c), "needs a business");
        c.business_id = Some(GhlBusinessId::parse("biz").unwrap());
        assert!(s.matches(&c));
        c.tags = normalise::tags(["b", "lost"]);
        assert!(!s.matches(&c));
    }

    #[test]
    fn selectors_read_from_config() {
        let s: Selector = serde_json::from_str(r#"{"kind":"tag","tag":"ekyte"}"#).unwrap();
        assert_eq!(s, Selector::default());
        let r: Selector =
            serde_json::from_str(r#"{"kind":"rule","any_tags":["x"],"require_email":true}"#)
                .unwrap();
        assert!(matches!(
            r,
            Selector::Rule(SelectorRule {
                require_email: true,
                ..
            })
        ));
        assert!(serde_json::from_str::<Selector>(r#"{"kind":"tags"}"#).is_err());
    }
}
