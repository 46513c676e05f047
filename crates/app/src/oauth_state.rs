//! The OAuth `state` parameter: which tenant an installation is for, signed so that a
//! callback cannot be forged or replayed after it expires (CSRF protection, RFC 6749 §10.12).
//!
//! Format: `<tenant>.<expiry unix seconds>.<base64url HMAC-SHA256 of "tenant.expiry">`.

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

    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(message.as_bytes());
        mac
    }

    pub fn sign(&self, tenant: &TenantId, now: DateTime<Utc>) -> String {
        let message = format!("{tenant}.{}", (now + self.lifetime).timestamp());
        let tag = self.mac(&message).finalize().into_bytes();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    pub fn verify(&self, state: &str, now: DateTime<Utc>) -> Result<TenantId, StateError> {
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
        TenantId::parse(tenant).map_err(|_| StateError::BadTenant)
    }
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
    }
}
