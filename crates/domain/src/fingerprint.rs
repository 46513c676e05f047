//! Fingerprints: a stable SHA-256 of a record's canonical form.
//!
//! The bytes hashed are written here by hand, not by a serialisation library, so they cannot
//! change under us with a dependency upgrade or a feature flag (`serde_json`'s
//! `preserve_order`, say). The format, version 1:
//!
//! ```text
//! "ges-fp-v1" 0x00 <kind> 0x00
//! then for each synced field, in `Record::field_names` order:
//!   <field name> 0x00 <value>
//! value := 'T' <len:u64 BE> <utf-8>        text
//!        | 'N'                             absent text or time
//!        | 'B' (0|1)                       bool
//!        | 'D' <unix seconds:i64 BE>       time (already whole seconds)
//!        | 'L' <count:u64 BE> <text>*      list (already sorted where order is meaningless)
//!        | 'M' <count:u64 BE> (<text><text>)*  map, in key order
//!        | 'S' <status as text>
//! ```
//!
//! Fingerprints are stored in the database and compared across releases: changing this format
//! means a new version prefix and a migration that recomputes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{EntityKind, FieldValue, Record};

/// A SHA-256 digest, shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hex digits, got {0:?}")]
pub struct BadFingerprint(pub String);

impl Fingerprint {
    /// The fingerprint of a record (normalise it first; see [`crate::normalise`]).
    pub fn of<R: Record>(record: &R) -> Self {
        let mut h = Hasher::new(R::KIND);
        for &f in R::field_names() {
            h.field(f, &record.get(f));
        }
        h.finish()
    }

    /// The fingerprint of a rendered document (the profile note's HTML, say).
    pub fn of_document(kind: EntityKind, content: &str) -> Self {
        let mut h = Hasher::new(kind);
        h.field("content", &FieldValue::Text(Some(content.to_owned())));
        h.finish()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &hex::encode(self.0)[..12])
    }
}

impl FromStr for Fingerprint {
    type Err = BadFingerprint;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadFingerprint(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = BadFingerprint;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

struct Hasher(Sha256);

impl Hasher {
    fn new(kind: EntityKind) -> Self {
        let mut h = Sha256::new();
        h.update(b"ges-fp-v1\0");
        h.update(kind.as_str().as_bytes());
        h.update([0]);
        Self(h)
    }

    fn text(&mut self, s: &str) {
        self.0.update(b"T");
        self.0.update((s.len() as u64).to_be_bytes());
        self.0.update(s.as_bytes());
    }

    fn field(&mut self, name: &str, value: &FieldValue) {
        self.0.update(name.as_bytes());
        self.0.update([0]);
        match value {
            FieldValue::Text(Some(s)) => self.text(s),
            FieldValue::Text(None) | FieldValue::Time(None) => self.0.update(b"N"),
            FieldValue::Bool(b) => self.0.update([b'B', u8::from(*b)]),
            FieldValue::Time(Some(t)) => {
                self.0.update(b"D");
                self.0.update(t.timestamp().to_be_bytes());
            }
            FieldValue::List(items) => {
                self.0.update(b"L");
                self.0.update((items.len() as u64).to_be_bytes());
                for i in items {
                    self.text(i);
                }
            }
            FieldValue::Map(map) => {
                self.0.update(b"M");
                self.0.update((map.len() as u64).to_be_bytes());
                for (k, v) in map {
                    self.text(k);
                    self.text(v);
                }
            }
            FieldValue::Status(s) => {
                self.0.update(b"S");
                self.0.update(s.as_str().as_bytes());
            }
        }
    }

    fn finish(self) -> Fingerprint {
        Fingerprint(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{Contact, Task};
    use crate::record::TaskStatus;
    use chrono::TimeZone;

    /// Golden values: if one of these changes, stored fingerprints no longer match and every
    /// link would be rewritten. Change the format only with a new version prefix. The expected
    /// values were computed from the format in the module doc by a separate implementation
    /// (Python's hashlib), not by running this code.
    #[test]
    fn fingerprints_are_stable_across_releases() {
        let c = Contact {
            name: Some("Ana Souza".into()),
            email: Some("ana@x.com".into()),
            tags: vec!["ekyte".into(), "vip".into()],
            dnd: true,
            ..Contact::default()
        };
        assert_eq!(
            Fingerprint::of(&c).to_string(),
            "9a6887c9944dd065878574ba01c3888f53bc36b2e6312976ecdde0da5a719657"
        );
        let t = Task {
            title: Some("Kick-off".into()),
            due: Some(chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()),
            status: TaskStatus::Completed,
            ..Task::default()
        };
        assert_eq!(
            Fingerprint::of(&t).to_string(),
            "301e46ceae5a59b4d31103458a21bbba5693e7fd999bc8fb6fe7695011f45db5"
        );
    }

    #[test]
    fn metadata_does_not_change_the_fingerprint() {
        let mut t = Task::default();
        let before = Fingerprint::of(&t);
        t.updated_at = Some(chrono::Utc::now());
        assert_eq!(Fingerprint::of(&t), before);
        t.title = Some("x".into());
        assert_ne!(Fingerprint::of(&t), before);
    }

    #[test]
    fn absent_and_empty_text_differ_and_fields_do_not_run_together() {
        let a = Task {
            title: Some("ab".into()),
            body: Some("c".into()),
            ..Task::default()
        };
        let b = Task {
            title: Some("a".into()),
            body: Some("bc".into()),
            ..Task::default()
        };
        assert_ne!(Fingerprint::of(&a), Fingerprint::of(&b));
    }

    #[test]
    fn hex_round_trip() {
        let f = Fingerprint::of(&Task::default());
        assert_eq!(f.to_string().parse::<Fingerprint>().unwrap(), f);
        assert!("zz".parse::<Fingerprint>().is_err());
    }
}
