//! Validated identifiers.
//!
//! Every id that crosses a port is a newtype built by a validating constructor (`parse`), so a
//! GHL contact id can never be passed where an eKyte workspace id is expected, and a value with
//! spaces, control characters or a path separator never reaches a URL.
//!
//! - GHL ids are opaque strings (20 alphanumeric characters in practice; we accept
//!   `[A-Za-z0-9_-]`, 1–64 characters, because GHL documents no format).
//! - eKyte ids are positive integers (API.md §7), except users, which are UUID strings.
//! - Tenant ids are our own slugs: `[a-z0-9][a-z0-9_-]{0,62}`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains the character {found:?}, which is not allowed")]
    BadChar { kind: &'static str, found: char },
    #[error("{kind} must be a positive whole number, got {value:?}")]
    NotPositive { kind: &'static str, value: String },
    #[error("{kind} {value:?} is not of the form {expected}")]
    Malformed {
        kind: &'static str,
        value: String,
        expected: &'static str,
    },
}

fn check_opaque(kind: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.chars().count() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if let Some(found) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(IdError::BadChar { kind, found });
    }
    Ok(())
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validate and wrap. Surrounding white space is rejected, not trimmed: an id
            /// that arrives padded is a bug upstream worth seeing.
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check_opaque($kind, &raw, 64)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(u64);

        impl $name {
            pub fn new(value: u64) -> Result<Self, IdError> {
                if value == 0 {
                    return Err(IdError::NotPositive { kind: $kind, value: "0".into() });
                }
                Ok(Self(value))
            }

            /// Parse the decimal form used in URLs and ExternalIds.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                let value: u64 = raw.parse().map_err(|_| IdError::NotPositive {
                    kind: $kind,
                    value: raw.to_owned(),
                })?;
                Self::new(value)
            }

            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<u64> for $name {
            type Error = IdError;
            fn try_from(v: u64) -> Result<Self, Self::Error> {
                Self::new(v)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }
    };
}

opaque_id!(
    /// A GHL location (sub-account). One tenant has exactly one.
    LocationId,
    "GHL location id"
);
opaque_id!(
    /// A GHL contact.
    GhlContactId,
    "GHL contact id"
);
opaque_id!(
    /// A GHL task (always under a contact).
    GhlTaskId,
    "GHL task id"
);
opaque_id!(
    /// A GHL note (always under a contact).
    GhlNoteId,
    "GHL note id"
);
opaque_id!(
    /// A GHL business.
    GhlBusinessId,
    "GHL business id"
);
opaque_id!(
    /// A GHL appointment (calendar event).
    GhlAppointmentId,
    "GHL appointment id"
);
opaque_id!(
    /// A GHL user (the `assignedTo` of contacts and tasks).
    GhlUserId,
    "GHL user id"
);

numeric_id!(
    /// An eKyte company: the eKyte tenant.
    EkyteCompanyId,
    "eKyte company id"
);
numeric_id!(
    /// An eKyte workspace: the per-client unit a GHL contact maps to.
    EkyteWorkspaceId,
    "eKyte workspace id"
);
numeric_id!(
    /// An eKyte task (`CtcTask`).
    EkyteTaskId,
    "eKyte task id"
);
numeric_id!(
    /// An eKyte board (`Plan`), which holds notes.
    EkyteBoardId,
    "eKyte board id"
);
numeric_id!(
    /// An eKyte board note.
    EkyteNoteId,
    "eKyte note id"
);
numeric_id!(
    /// An eKyte task comment.
    EkyteCommentId,
    "eKyte comment id"
);
numeric_id!(
    /// An eKyte task type (decides the workflow and so the executors).
    EkyteTaskTypeId,
    "eKyte task type id"
);

/// One of our tenants: one GHL location ↔ one eKyte company.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        const KIND: &str = "tenant id";
        let raw = raw.into();
        if raw.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if raw.len() > 63 {
            return Err(IdError::TooLong {
                kind: KIND,
                max: 63,
            });
        }
        if let Some(found) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(IdError::BadChar { kind: KIND, found });
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(IdError::Malformed {
                kind: KIND,
                value: raw,
                expected: "a lower-case letter or digit first",
            });
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

/// An eKyte user: a UUID string (API.md §3.3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EkyteUserId(String);

impl EkyteUserId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        const KIND: &str = "eKyte user id";
        let raw = raw.into();
        let is_uuid = raw.len() == 36
            && raw.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if !is_uuid {
            return Err(IdError::Malformed {
                kind: KIND,
                value: raw,
                expected: "a UUID (8-4-4-4-12 hex digits)",
            });
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EkyteUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EkyteUserId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<EkyteUserId> for String {
    fn from(id: EkyteUserId) -> String {
        id.0
    }
}

/// What an eKyte workspace's `ExternalId` says it mirrors (DESIGN.md §2).
///
/// Formats: `ghl:<locationId>:<contactId>` for a contact's workspace and
/// `ghl:<locationId>:business:<businessId>` when workspaces are kept per business.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExternalRef {
    Contact {
        location: LocationId,
        contact: GhlContactId,
    },
    Business {
        location: LocationId,
        business: GhlBusinessId,
    },
}

impl ExternalRef {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "eKyte ExternalId";
        let malformed = || IdError::Malformed {
            kind: KIND,
            value: raw.to_owned(),
            expected: "ghl:<locationId>:<contactId> or ghl:<locationId>:business:<businessId>",
        };
        let mut parts = raw.split(':');
        if parts.next() != Some("ghl") {
            return Err(malformed());
        }
        let location = LocationId::parse(parts.next().ok_or_else(malformed)?)?;
        match (parts.next(), parts.next(), parts.next()) {
            (Some("business"), Some(b), None) => Ok(Self::Business {
                location,
                business: GhlBusinessId::parse(b)?,
            }),
            (Some("business"), None, None) => Err(malformed()),
            (Some(c), None, None) => Ok(Self::Contact {
                location,
                contact: GhlContactId::parse(c)?,
            }),
            _ => Err(malformed()),
        }
    }

    pub fn location(&self) -> &LocationId {
        match self {
            Self::Contact { location, .. } | Self::Business { location, .. } => location,
        }
    }
}

impl fmt::Display for ExternalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Contact { location, contact } => write!(f, "ghl:{location}:{contact}"),
            Self::Business { location, business } => {
                write!(f, "ghl:{location}:business:{business}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_ids_reject_what_would_break_a_url() {
        assert!(GhlContactId::parse("ocQHyuzHvysMo5N5VsXc").is_ok());
        assert_eq!(
            GhlContactId::parse(""),
            Err(IdError::Empty {
                kind: "GHL contact id"
            })
        );
        assert!(matches!(
            GhlContactId::parse("abc/../x"),
            Err(IdError::BadChar { found: '/', .. })
        ));
        assert!(matches!(
            GhlContactId::parse(" abc"),
            Err(IdError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(
            LocationId::parse("x".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn numeric_ids_are_positive() {
        assert_eq!(EkyteWorkspaceId::parse("42").map(|w| w.get()), Ok(42));
        assert!(EkyteWorkspaceId::parse("0").is_err());
        assert!(EkyteWorkspaceId::parse("-3").is_err());
        assert!(EkyteWorkspaceId::parse("4a").is_err());
    }

    #[test]
    fn tenant_ids_are_slugs() {
        assert!(TenantId::parse("acme-agency_2").is_ok());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("-acme").is_err());
    }

    #[test]
    fn user_ids_are_uuids() {
        assert!(EkyteUserId::parse("7C9E6679-7425-40DE-944B-E07FC1F90AE7").is_ok());
        assert!(EkyteUserId::parse("not-a-uuid").is_err());
    }

    #[test]
    fn external_refs_round_trip() {
        for raw in ["ghl:loc1:c123", "ghl:loc1:business:b9"] {
            assert_eq!(ExternalRef::parse(raw).unwrap().to_string(), raw);
        }
        for bad in [
            "",
            "ghl",
            "ghl:loc",
            "crm:l:c",
            "ghl:l:business",
            "ghl:l:c:x",
        ] {
            assert!(ExternalRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: GhlContactId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.as_str(), "abc");
        assert!(serde_json::from_str::<GhlContactId>("\"a b\"").is_err());
        assert!(serde_json::from_str::<EkyteTaskId>("0").is_err());
    }
}
