//! The OAuth `state` parameter: which tenant an installation is for, signed so that a
//! callback cannot be forged or replayed after it expires (CSRF protection, RFC 6749 §10.12).
//!
//! Format: `<subject>.<expiry unix seconds>.<base64url HMAC-SHA256 of "subject.expiry">`,
//! where the subject is the tenant, or `_agency` for an agency-wide install (no tenant id
//! starts with `_`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

use domain::TenantId;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks `state` values with a secret key.
pub struct StateSigner {
    key: SecretSlice<u8>,
    lifetime: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the state is not of the form tenant.expiry.signature")]
    Malformed,
    #[error("the state's signature does not match")]
    BadSignature,
    #[error("the installation link expired; create a new one with `oauth url`")]
    Expired,
    #[error("the state names an invalid tenant id")]
    BadTenant,
}

impl StateSigner {
    pub fn new(key: Vec<u8>, lifetime: Duration) -> Self {
        Self {
            key: key.into(),
            lifetime,
        }
    }

    /// The base64url HMAC of `message` (a CSRF token).
    pub fn tag(&self, message: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(message).finalize().into_bytes())
    }

    /// Whether `tag` is the HMAC of `message` (compared in constant time).
    pub fn verify_tag(&self, message: &str, tag: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(tag)
            .is_ok_and(|t| self.mac(message).verify_slice(&t).is_ok())
    }

    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(message.as_bytes());
        mac
    }

    pub fn sign(&self, tenant: &TenantId, now: DateTime<Utc>) -> String {
        self.sign_subject(tenant.as_str(), now)
    }

    /// A state for an agency-wide install (the locations come from GHL's answer).
    pub fn sign_agency(&self, now: DateTime<Utc>) -> String {
        self.sign_subject(AGENCY_SUBJECT, now)
    }

    /// A signed `subject` that expires after the signer's lifetime (a console session).
    pub fn sign_subject(&self, subject: &str, now: DateTime<Utc>) -> String {
        let message = format!("{subject}.{}", (now + self.lifetime).timestamp());
        let tag = self.mac(&message).finalize().into_bytes();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// What a verified state installs for.
    pub fn verify_install(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<InstallFor, StateError> {
        match self.verify_subject(state, now)? {
            s if s == AGENCY_SUBJECT => Ok(InstallFor::Agency),
            s => TenantId::parse(s)
                .map(InstallFor::Tenant)
                .map_err(|_| StateError::BadTenant),
        }
    }

    pub fn verify(&self, state: &str, now: DateTime<Utc>) -> Result<TenantId, StateError> {
        match self.verify_install(state, now)? {
            InstallFor::Tenant(t) => Ok(t),
            InstallFor::Agency => Err(StateError::BadTenant),
        }
    }

    /// The subject of a value [`Self::sign_subject`] made, unless forged or expired.
    pub fn verify_subject<'s>(
        &self,
        state: &'s str,
        now: DateTime<Utc>,
    ) -> Result<&'s str, StateError> {
        let mut parts = state.rsplitn(2, '.');
        let (Some(tag), Some(message)) = (parts.next(), parts.next()) else {
            return Err(StateError::Malformed);
        };
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StateError::Malformed)?;
        // Constant-time comparison.
        self.mac(message)
            .verify_slice(&tag)
            .map_err(|_| StateError::BadSignature)?;
        let (tenant, expiry) = message.rsplit_once('.').ok_or(StateError::Malformed)?;
        let expiry: i64 = expiry.parse().map_err(|_| StateError::Malformed)?;
        if now.timestamp() > expiry {
            return Err(StateError::Expired);
        }
        Ok(tenant)
    }
}

/// The subject of an agency install's state.
const AGENCY_SUBJECT: &str = "_agency";

/// What an install was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallFor {
    /// One tenant's location.
    Tenant(TenantId),
    /// An agency's locations, whichever it approves.
    Agency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_states_verify_and_forgeries_do_not() {
        let s = StateSigner::new(b"k".repeat(32), Duration::minutes(30));
        let now = Utc::now();
        let t = TenantId::parse("acme").unwrap();
        let state = s.sign(&t, now);
        assert_eq!(s.verify(&state, now), Ok(t.clone()));
        assert_eq!(
            s.verify(&state, now + Duration::hours(1)),
            Err(StateError::Expired)
        );
        let forged = state.replacen("acme", "evil", 1);
        assert_eq!(s.verify(&forged, now), Err(StateError::BadSignature));
        let other = StateSigner::new(b"x".repeat(32), Duration::minutes(30));
        assert_eq!(other.verify(&state, now), Err(StateError::BadSignature));
        assert_eq!(s.verify("nonsense", now), Err(StateError::Malformed));
        let agency = s.sign_agency(now);
        assert_eq!(s.verify_install(&agency, now), Ok(InstallFor::Agency));
        assert_eq!(s.verify(&agency, now), Err(StateError::BadTenant));
        assert_eq!(
            s.verify_install(&state, now),
            Ok(InstallFor::Tenant(t.clone()))
        );
    }
}
