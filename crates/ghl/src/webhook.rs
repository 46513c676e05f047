//! GHL webhooks (API.md §9): signature verification and parsing into [`GhlEvent`], as pure
//! functions the HTTP ingress calls with the raw request.
//!
//! Guarantees:
//! - the signature is checked over the **raw body bytes** exactly as received, before any
//!   parsing;
//! - `x-ghl-signature` (Ed25519, base64) is preferred; when it is present it alone decides —
//!   no fallback on failure. Only when it is absent is `x-wh-signature` (RSA PKCS#1 v1.5 over
//!   SHA-256, base64; GHL drops it on 2026-07-01, API.md §9.3) checked, and only while
//!   `accept_legacy` is on. This is the order of GHL's own SDK (\[SDK\] README);
//! - keys are configurable (PEM, several per scheme for rotations) and default to the keys
//!   GHL publishes (API.md §9.3, copied verbatim below);
//! - a `timestamp` further than the replay window (default 5 minutes, \[WHAUTH\] §3) from now,
//!   in either direction, is refused;
//! - parsing never panics on any input (a property test feeds it random bytes and JSON);
//!   an unknown `type` is [`GhlEventKind::Unknown`], not an error; a known type missing the
//!   ids the engine needs is [`WebhookError::Malformed`].
//!
//! The ingress maps errors with [`WebhookError::http_status`]: 401 for signatures and stale
//! timestamps, 400 for malformed payloads. (GHL retries only on 429, API.md §9.5, so neither
//! is redelivered.) Deduplication on `webhookId` is the inbox's job, not this module's.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use domain::{GhlAppointmentId, GhlContactId, GhlNoteId, GhlTaskId, LocationId};
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ports::ghl::{CompanyEvent, CompanyEventKind, GhlEvent, GhlEventKind, Webhook};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::error::ConfigError;
use crate::mapping::parse_time;

/// The Ed25519 signature header (API.md §9.3).
pub const GHL_SIGNATURE_HEADER: &str = "x-ghl-signature";
/// The legacy RSA signature header (API.md §9.3).
pub const LEGACY_SIGNATURE_HEADER: &str = "x-wh-signature";

/// GHL's published Ed25519 key for `x-ghl-signature`, verbatim from API.md §9.3 (\[WIG\] via
/// corroborating copies; confirm against the live page before go-live).
pub const PUBLISHED_ED25519_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
";

/// GHL's published RSA key for `x-wh-signature`, verbatim from API.md §9.3 (\[WHAUTH\]).
pub const PUBLISHED_RSA_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
";

/// Verification settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// SPKI PEM keys for `x-ghl-signature`; empty = [`PUBLISHED_ED25519_KEY`].
    pub ed25519_keys: Vec<String>,
    /// SPKI (or PKCS#1) PEM keys for `x-wh-signature`; empty = [`PUBLISHED_RSA_KEY`].
    pub rsa_keys: Vec<String>,
    /// Refuse payloads whose `timestamp` is further than this from now (\[WHAUTH\] §3: ~5 min).
    pub replay_window: Duration,
    /// Check `x-wh-signature` when `x-ghl-signature` is absent (GHL stops sending it on
    /// 2026-07-01, API.md §9.3; turn this off then).
    pub accept_legacy: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            ed25519_keys: Vec::new(),
            rsa_keys: Vec::new(),
            replay_window: Duration::from_secs(5 * 60),
            accept_legacy: true,
        }
    }
}

/// Which signature vouched for a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// `x-ghl-signature`.
    Ed25519,
    /// `x-wh-signature` (legacy).
    RsaSha256,
}

impl std::fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ed25519 => "x-ghl-signature (Ed25519)",
            Self::RsaSha256 => "x-wh-signature (RSA-SHA256)",
        })
    }
}

/// The two signature headers of a request, as received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signatures<'a> {
    pub ghl: Option<&'a str>,
    pub legacy: Option<&'a str>,
}

impl<'a> Signatures<'a> {
    /// Read both headers (names are case-insensitive). A header that is not visible ASCII, or
    /// that comes more than once (which value did a proxy in front check?), counts as present
    /// but unreadable, so it is refused and can never fall back to the other scheme.
    pub fn from_headers(headers: &'a HeaderMap) -> Self {
        const UNREADABLE: &str = "\u{0}invalid";
        let get = |name: &str| {
            let mut values = headers.get_all(name).iter();
            let first = values.next()?;
            if values.next().is_some() {
                return Some(UNREADABLE);
            }
            Some(first.to_str().unwrap_or(UNREADABLE))
        };
        Self {
            ghl: get(GHL_SIGNATURE_HEADER),
            legacy: get(LEGACY_SIGNATURE_HEADER),
        }
    }
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook carries neither x-ghl-signature nor x-wh-signature")]
    MissingSignature,

    #[error("the {0} header does not hold a base64 signature of the right length")]
    MalformedSignature(SignatureScheme),

    #[error("the {0} signature does not match the body")]
    BadSignature(SignatureScheme),

    #[error("only x-wh-signature (legacy RSA) was sent, and legacy signatures are turned off")]
    LegacyRefused,

    #[error(
        "the webhook's timestamp {timestamp} is more than {window:?} away from now ({now}): \
         refused as a possible replay"
    )]
    Stale {
        timestamp: DateTime<Utc>,
        now: DateTime<Utc>,
        window: Duration,
    },

    #[error("malformed webhook payload: {reason}")]
    Malformed {
        reason: String,
        #[source]
        source: Option<serde_json::Error>,
    },
}

impl WebhookError {
    fn malformed(reason: impl Into<String>) -> Self {
        Self::Malformed {
            reason: reason.into(),
            source: None,
        }
    }

    /// The answer the ingress gives: 401 when the sender is not trusted (signature, replay),
    /// 400 when a trusted payload cannot be read.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Malformed { .. } => 400,
            _ => 401,
        }
    }
}

/// Verifies and parses webhooks. Cheap to share (`Arc`); keys are parsed once.
#[derive(Debug, Clone)]
pub struct WebhookVerifier {
    ed25519: Vec<ed25519_dalek::VerifyingKey>,
    rsa: Vec<rsa::pkcs1v15::VerifyingKey<Sha256>>,
    window: Duration,
    accept_legacy: bool,
}

fn parse_rsa_key(pem: &str) -> Result<rsa::RsaPublicKey, String> {
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::pkcs8::DecodePublicKey as _;
    rsa::RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| e.to_string())
}

impl WebhookVerifier {
    pub fn new(config: &WebhookConfig) -> Result<Self, ConfigError> {
        let defaults = |keys: &[String], default: &str| -> Vec<String> {
            let given: Vec<String> = keys
                .iter()
                .filter(|k| !k.trim().is_empty())
                .cloned()
                .collect();
            if given.is_empty() {
                vec![default.to_owned()]
            } else {
                given
            }
        };
        let ed25519 = defaults(&config.ed25519_keys, PUBLISHED_ED25519_KEY)
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
                    ConfigError::Key {
                        which: format!("ed25519 #{i}"),
                        message: e.to_string(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rsa = defaults(&config.rsa_keys, PUBLISHED_RSA_KEY)
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                parse_rsa_key(pem)
                    .map(rsa::pkcs1v15::VerifyingKey::<Sha256>::new)
                    .map_err(|message| ConfigError::Key {
                        which: format!("rsa #{i}"),
                        message,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if config.replay_window.is_zero() {
            return Err(ConfigError::invalid("replay_window", "must be above zero"));
        }
        Ok(Self {
            ed25519,
            rsa,
            window: config.replay_window,
            accept_legacy: config.accept_legacy,
        })
    }

    /// Check the signature over the raw body; returns the scheme that vouched for it.
    pub fn verify_signature(
        &self,
        signatures: Signatures<'_>,
        body: &[u8],
    ) -> Result<SignatureScheme, WebhookError> {
        use rsa::signature::Verifier as _;
        if let Some(raw) = signatures.ghl {
            let scheme = SignatureScheme::Ed25519;
            let bytes = BASE64
                .decode(raw.trim())
                .map_err(|_| WebhookError::MalformedSignature(scheme))?;
            let sig = ed25519_dalek::Signature::from_slice(&bytes)
                .map_err(|_| WebhookError::MalformedSignature(scheme))?;
            return if self
                .ed25519
                .iter()
                .any(|k| k.verify_strict(body, &sig).is_ok())
            {
                Ok(scheme)
            } else {
                Err(WebhookError::BadSignature(scheme))
            };
        }
        let Some(raw) = signatures.legacy else {
            return Err(WebhookError::MissingSignature);
        };
        if !self.accept_legacy {
            return Err(WebhookError::LegacyRefused);
        }
        let scheme = SignatureScheme::RsaSha256;
        let bytes = BASE64
            .decode(raw.trim())
            .map_err(|_| WebhookError::MalformedSignature(scheme))?;
        let sig = rsa::pkcs1v15::Signature::try_from(bytes.as_slice())
            .map_err(|_| WebhookError::MalformedSignature(scheme))?;
        if self.rsa.iter().any(|k| k.verify(body, &sig).is_ok()) {
            Ok(scheme)
        } else {
            Err(WebhookError::BadSignature(scheme))
        }
    }

    /// Verify the signature, parse, and refuse a stale timestamp: what the ingress calls.
    pub fn verify(
        &self,
        signatures: Signatures<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Webhook, WebhookError> {
        self.verify_signature(signatures, body)?;
        let event = parse_event(body)?;
        check_timestamp(event.timestamp(), now, self.window)?;
        Ok(event)
    }
}

/// Refuse an event whose `timestamp` is further than `window` from `now`.
pub fn check_timestamp(
    timestamp: DateTime<Utc>,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(), WebhookError> {
    let distance = (now - timestamp).abs();
    let limit = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    if distance > limit {
        return Err(WebhookError::Stale {
            timestamp,
            now,
            window,
        });
    }
    Ok(())
}

fn text<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn id<T, E: std::fmt::Display>(
    m: &Map<String, Value>,
    key: &str,
    kind: &str,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> Result<T, WebhookError> {
    let raw =
        text(m, key).ok_or_else(|| WebhookError::malformed(format!("{kind} without {key}")))?;
    parse(raw.to_owned()).map_err(|e| WebhookError::malformed(format!("{kind}: {key}: {e}")))
}

fn opt_id<T, E: std::fmt::Display>(
    m: &Map<String, Value>,
    key: &str,
    kind: &str,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> Result<Option<T>, WebhookError> {
    text(m, key)
        .map(|raw| {
            parse(raw.to_owned())
                .map_err(|e| WebhookError::malformed(format!("{kind}: {key}: {e}")))
        })
        .transpose()
}

/// Parse a payload (no signature check): the envelope (`type`, `locationId`, `webhookId`,
/// `timestamp`, API.md §9.1) and the ids of every event type of §9.2.
pub fn parse_event(body: &[u8]) -> Result<Webhook, WebhookError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed {
        reason: "the body is not JSON".to_owned(),
        source: Some(e),
    })?;
    let Value::Object(m) = value else {
        return Err(WebhookError::malformed("the body is not a JSON object"));
    };
    let kind_name = text(&m, "type").ok_or_else(|| WebhookError::malformed("no type"))?;
    let webhook_id = text(&m, "webhookId")
        .ok_or_else(|| WebhookError::malformed(format!("{kind_name} without webhookId")))?
        .to_owned();
    let timestamp = match m.get("timestamp") {
        Some(Value::String(s)) => parse_time(s),
        Some(Value::Number(n)) => n.as_i64().and_then(DateTime::<Utc>::from_timestamp_millis),
        _ => None,
    }
    .ok_or_else(|| WebhookError::malformed(format!("{kind_name} without a readable timestamp")))?;
    let Some(location) = text(&m, "locationId") else {
        return company_event(&m, kind_name, webhook_id, timestamp).map(Webhook::Company);
    };
    let location = LocationId::parse(location)
        .map_err(|e| WebhookError::malformed(format!("{kind_name}: locationId: {e}")))?;
    let k = kind_name;
    let contact = |m: &Map<String, Value>| id(m, "id", k, GhlContactId::parse);
    let kind = match kind_name {
        "ContactCreate" => GhlEventKind::ContactCreate {
            contact: contact(&m)?,
        },
        "ContactUpdate" => GhlEventKind::ContactUpdate {
            contact: contact(&m)?,
        },
        "ContactDelete" => GhlEventKind::ContactDelete {
            contact: contact(&m)?,
        },
        "ContactTagUpdate" => GhlEventKind::ContactTagUpdate {
            contact: contact(&m)?,
        },
        "ContactDndUpdate" => GhlEventKind::ContactDndUpdate {
            contact: contact(&m)?,
        },
        "TaskCreate" | "TaskComplete" | "TaskDelete" => {
            let task = id(&m, "id", k, GhlTaskId::parse)?;
            // Real TaskCreate payloads may lack contactId (#332): the engine resolves it.
            let contact = opt_id(&m, "contactId", k, GhlContactId::parse)?;
            match kind_name {
                "TaskCreate" => GhlEventKind::TaskCreate { task, contact },
                "TaskComplete" => GhlEventKind::TaskComplete { task, contact },
                _ => GhlEventKind::TaskDelete { task, contact },
            }
        }
        "NoteCreate" | "NoteUpdate" | "NoteDelete" => {
            let note = id(&m, "id", k, GhlNoteId::parse)?;
            let contact = id(&m, "contactId", k, GhlContactId::parse)?;
            match kind_name {
                "NoteCreate" => GhlEventKind::NoteCreate { note, contact },
                "NoteUpdate" => GhlEventKind::NoteUpdate { note, contact },
                _ => GhlEventKind::NoteDelete { note, contact },
            }
        }
        "AppointmentCreate" | "AppointmentUpdate" | "AppointmentDelete" => {
            // The ids live in `appointment{…}` ([WHEV]); top-level ids are accepted too.
            let inner = match m.get("appointment") {
                Some(Value::Object(a)) => a,
                _ => &m,
            };
            let appointment = id(inner, "id", k, GhlAppointmentId::parse)?;
            let contact = opt_id(inner, "contactId", k, GhlContactId::parse)?;
            match kind_name {
                "AppointmentCreate" => GhlEventKind::AppointmentCreate {
                    appointment,
                    contact,
                },
                "AppointmentUpdate" => GhlEventKind::AppointmentUpdate {
                    appointment,
                    contact,
                },
                _ => GhlEventKind::AppointmentDelete {
                    appointment,
                    contact,
                },
            }
        }
        "INSTALL" | "AppInstall" => GhlEventKind::Install {
            company_id: text(&m, "companyId").map(str::to_owned),
            app_id: text(&m, "appId").map(str::to_owned),
        },
        "UNINSTALL" | "AppUninstall" => GhlEventKind::Uninstall {
            company_id: text(&m, "companyId").map(str::to_owned),
            app_id: text(&m, "appId").map(str::to_owned),
        },
        other => GhlEventKind::Unknown {
            event_type: other.to_owned(),
        },
    };
    Ok(Webhook::Location(GhlEvent {
        webhook_id,
        location,
        timestamp,
        kind,
    }))
}

/// A company-level event (no `locationId`, API.md §9.2a): the agency's INSTALL and UNINSTALL,
/// LocationCreate and LocationUpdate (whose `id` is the location's), UserCreate and the rest.
fn company_event(
    m: &Map<String, Value>,
    kind_name: &str,
    webhook_id: String,
    timestamp: DateTime<Utc>,
) -> Result<CompanyEvent, WebhookError> {
    let company_id = text(m, "companyId")
        .ok_or_else(|| {
            WebhookError::malformed(format!(
                "{kind_name} names neither a locationId nor a companyId"
            ))
        })?
        .to_owned();
    let location = || id(m, "id", kind_name, LocationId::parse);
    let name = text(m, "name").map(str::to_owned);
    let kind = match kind_name {
        "INSTALL" | "AppInstall" => CompanyEventKind::Install {
            app_id: text(m, "appId").map(str::to_owned),
        },
        "UNINSTALL" | "AppUninstall" => CompanyEventKind::Uninstall {
            app_id: text(m, "appId").map(str::to_owned),
        },
        "LocationCreate" => CompanyEventKind::LocationCreate {
            location: location()?,
            name,
        },
        "LocationUpdate" => CompanyEventKind::LocationUpdate {
            location: location()?,
            name,
        },
        other => CompanyEventKind::Other {
            event_type: other.to_owned(),
        },
    };
    Ok(CompanyEvent {
        webhook_id,
        company_id,
        timestamp,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(kind: &str, extra: Value) -> Vec<u8> {
        let mut v = json!({
            "type": kind, "locationId": "loc1", "webhookId": "wh-1",
            "timestamp": "2025-01-02T03:04:05.000Z",
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn the_published_keys_parse() {
        let v = WebhookVerifier::new(&WebhookConfig::default()).unwrap();
        assert_eq!(v.ed25519.len(), 1);
        assert_eq!(v.rsa.len(), 1);
        use rsa::traits::PublicKeyParts as _;
        assert_eq!(parse_rsa_key(PUBLISHED_RSA_KEY).unwrap().size() * 8, 4096);
    }

    #[test]
    fn every_event_type_of_the_digest_parses() {
        let cases: Vec<(&str, Value, GhlEventKind)> = vec![
            (
                "ContactCreate",
                json!({"id": "c1"}),
                GhlEventKind::ContactCreate {
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "ContactUpdate",
                json!({"id": "c1"}),
                GhlEventKind::ContactUpdate {
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "ContactDelete",
                json!({"id": "c1"}),
                GhlEventKind::ContactDelete {
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "ContactTagUpdate",
                json!({"id": "c1"}),
                GhlEventKind::ContactTagUpdate {
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "ContactDndUpdate",
                json!({"id": "c1", "dndSettings": {}}),
                GhlEventKind::ContactDndUpdate {
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "TaskCreate",
                json!({"id": "t1"}),
                GhlEventKind::TaskCreate {
                    task: GhlTaskId::parse("t1").unwrap(),
                    contact: None,
                },
            ),
            (
                "TaskComplete",
                json!({"id": "t1", "contactId": "c1"}),
                GhlEventKind::TaskComplete {
                    task: GhlTaskId::parse("t1").unwrap(),
                    contact: Some(GhlContactId::parse("c1").unwrap()),
                },
            ),
            (
                "TaskDelete",
                json!({"id": "t1", "contactId": "c1"}),
                GhlEventKind::TaskDelete {
                    task: GhlTaskId::parse("t1").unwrap(),
                    contact: Some(GhlContactId::parse("c1").unwrap()),
                },
            ),
            (
                "NoteCreate",
                json!({"id": "n1", "contactId": "c1"}),
                GhlEventKind::NoteCreate {
                    note: GhlNoteId::parse("n1").unwrap(),
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "NoteUpdate",
                json!({"id": "n1", "contactId": "c1"}),
                GhlEventKind::NoteUpdate {
                    note: GhlNoteId::parse("n1").unwrap(),
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "NoteDelete",
                json!({"id": "n1", "contactId": "c1"}),
                GhlEventKind::NoteDelete {
                    note: GhlNoteId::parse("n1").unwrap(),
                    contact: GhlContactId::parse("c1").unwrap(),
                },
            ),
            (
                "AppointmentCreate",
                json!({"appointment": {"id": "a1", "contactId": "c1"}}),
                GhlEventKind::AppointmentCreate {
                    appointment: GhlAppointmentId::parse("a1").unwrap(),
                    contact: Some(GhlContactId::parse("c1").unwrap()),
                },
            ),
            (
                "AppointmentUpdate",
                json!({"appointment": {"id": "a1"}}),
                GhlEventKind::AppointmentUpdate {
                    appointment: GhlAppointmentId::parse("a1").unwrap(),
                    contact: None,
                },
            ),
            (
                "AppointmentDelete",
                json!({"appointment": {"id": "a1"}}),
                GhlEventKind::AppointmentDelete {
                    appointment: GhlAppointmentId::parse("a1").unwrap(),
                    contact: None,
                },
            ),
            (
                "INSTALL",
                json!({"companyId": "co", "appId": "app"}),
                GhlEventKind::Install {
                    company_id: Some("co".into()),
                    app_id: Some("app".into()),
                },
            ),
            (
                "UNINSTALL",
                json!({"appId": "app"}),
                GhlEventKind::Uninstall {
                    company_id: None,
                    app_id: Some("app".into()),
                },
            ),
            (
                "OpportunityCreate",
                json!({"id": "o1"}),
                GhlEventKind::Unknown {
                    event_type: "OpportunityCreate".into(),
                },
            ),
        ];
        for (kind, extra, want) in cases {
            let e = parse_event(&payload(kind, extra))
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
                .into_location()
                .unwrap_or_else(|| panic!("{kind}: not a location event"));
            assert_eq!(e.kind, want, "{kind}");
            assert_eq!(e.webhook_id, "wh-1");
            assert_eq!(e.location.as_str(), "loc1");
        }
    }

    #[test]
    fn malformed_payloads_say_why() {
        for (body, why) in [
            (b"not json".to_vec(), "not JSON"),
            (b"[1]".to_vec(), "not a JSON object"),
            (payload("NoteCreate", json!({"id": "n1"})), "without contactId"),
            (payload("ContactCreate", json!({"id": "a/b"})), "ContactCreate: id"),
            (br#"{"type":"ContactCreate","id":"c","locationId":"l","timestamp":"2025-01-01T00:00:00Z"}"#.to_vec(), "webhookId"),
        ] {
            let e = parse_event(&body).unwrap_err();
            assert_eq!(e.http_status(), 400);
            assert!(e.to_string().contains(why), "{e} / {why}");
        }
    }

    /// The company-level events of API.md §9.2a, in their documented forms (no `locationId`).
    #[test]
    fn company_level_events_parse_without_a_location() {
        let company = |kind: &str, extra: Value| {
            let mut v = json!({
                "type": kind, "companyId": "comp1", "webhookId": "wh-c",
                "timestamp": "2025-01-02T03:04:05.000Z",
            });
            if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
                m.extend(e);
            }
            match parse_event(&serde_json::to_vec(&v).unwrap()) {
                Ok(Webhook::Company(e)) => {
                    assert_eq!(e.company_id, "comp1");
                    e.kind
                }
                other => panic!("{kind}: {other:?}"),
            }
        };
        assert_eq!(
            company(
                "INSTALL",
                json!({"appId": "app1", "planId": "p", "trial": {}})
            ),
            CompanyEventKind::Install {
                app_id: Some("app1".into())
            }
        );
        assert_eq!(
            company("UNINSTALL", json!({"appId": "app1"})),
            CompanyEventKind::Uninstall {
                app_id: Some("app1".into())
            }
        );
        assert_eq!(
            company("LocationCreate", json!({"id": "loc9", "name": "Client 9"})),
            CompanyEventKind::LocationCreate {
                location: LocationId::parse("loc9").unwrap(),
                name: Some("Client 9".into())
            }
        );
        assert_eq!(
            company(
                "LocationUpdate",
                json!({"id": "loc9", "name": "Client Nine"})
            ),
            CompanyEventKind::LocationUpdate {
                location: LocationId::parse("loc9").unwrap(),
                name: Some("Client Nine".into())
            }
        );
        assert_eq!(
            company("UserCreate", json!({"id": "u1", "locations": ["loc9"]})),
            CompanyEventKind::Other {
                event_type: "UserCreate".into()
            }
        );
        // Neither a location nor a company: there is no tenant to find.
        let orphan = br#"{"type":"UserCreate","id":"u1","webhookId":"w","timestamp":"2025-01-01T00:00:00Z"}"#;
        let e = parse_event(orphan).unwrap_err();
        assert!(
            e.to_string()
                .contains("neither a locationId nor a companyId"),
            "{e}"
        );
    }

    #[test]
    fn stale_timestamps_are_refused_both_ways() {
        let e = parse_event(&payload("ContactCreate", json!({"id": "c1"}))).unwrap();
        let (t, w) = (e.timestamp(), Duration::from_secs(300));
        assert!(check_timestamp(t, t + chrono::Duration::seconds(299), w).is_ok());
        let late = check_timestamp(t, t + chrono::Duration::seconds(301), w).unwrap_err();
        assert_eq!(late.http_status(), 401);
        assert!(check_timestamp(t, t - chrono::Duration::seconds(301), w).is_err());
    }

    #[test]
    fn a_present_ed25519_header_never_falls_back() {
        let v = WebhookVerifier::new(&WebhookConfig::default()).unwrap();
        let e = v
            .verify_signature(
                Signatures {
                    ghl: Some("bm90IGEgc2lnbmF0dXJl"),
                    legacy: Some("whatever"),
                },
                b"{}",
            )
            .unwrap_err();
        assert!(matches!(
            e,
            WebhookError::MalformedSignature(SignatureScheme::Ed25519)
        ));
        assert!(matches!(
            v.verify_signature(Signatures::default(), b"{}"),
            Err(WebhookError::MissingSignature)
        ));
    }

    #[test]
    fn a_repeated_signature_header_is_unreadable() {
        use reqwest::header::HeaderValue;
        let mut headers = HeaderMap::new();
        headers.append(
            GHL_SIGNATURE_HEADER,
            HeaderValue::from_static("c2lnbmF0dXJl"),
        );
        assert_eq!(Signatures::from_headers(&headers).ghl, Some("c2lnbmF0dXJl"));
        headers.append("X-GHL-Signature", HeaderValue::from_static("b3RoZXI="));
        let read = Signatures::from_headers(&headers);
        let v = WebhookVerifier::new(&WebhookConfig::default()).unwrap();
        assert!(matches!(
            v.verify_signature(read, b"{}"),
            Err(WebhookError::MalformedSignature(SignatureScheme::Ed25519))
        ));
    }
}
