//! The tenants' eKyte credentials, kept in memory once read (issue 17: reading and decrypting
//! them from the store on every call cost a statement and an AES-GCM open per request).
//!
//! An entry lives [`CredsCache::TTL`], so a key or MCP token stored by another process (the
//! console, the CLI) is in use within that time. eKyte refusing a credential (HTTP 401 or 403)
//! forgets the tenant's entry at once, so the retry reads the store again; so does
//! `EkyteApi::check`, which always reads the store.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use secrecy::SecretString;

/// A tenant's eKyte credentials for one operation.
#[derive(Clone)]
pub(crate) struct Creds {
    pub api_key: SecretString,
    pub mcp_token: Option<SecretString>,
    pub company: String,
}

/// The secrets of a tenant's credentials (the company id comes from the tenant each time).
#[derive(Clone)]
struct Secrets {
    api_key: SecretString,
    mcp_token: Option<SecretString>,
}

/// Credentials by tenant id, each with the moment it was read.
#[derive(Default)]
pub(crate) struct CredsCache {
    entries: Mutex<HashMap<String, (Instant, Secrets)>>,
}

impl CredsCache {
    /// How long a read credential is used without reading the store again.
    pub const TTL: Duration = Duration::from_secs(60);

    /// `tenant`'s credentials, for the eKyte company `company`.
    pub fn get(&self, tenant: &str, company: &str) -> Option<Creds> {
        let map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(tenant)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, s)| Creds {
                api_key: s.api_key.clone(),
                mcp_token: s.mcp_token.clone(),
                company: company.to_owned(),
            })
    }

    pub fn put(&self, tenant: &str, creds: &Creds) {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < Self::TTL);
        }
        let secrets = Secrets {
            api_key: creds.api_key.clone(),
            mcp_token: creds.mcp_token.clone(),
        };
        map.insert(tenant.to_owned(), (Instant::now(), secrets));
    }

    /// Forget `tenant`'s entry (eKyte refused it, or it is being checked).
    pub fn forget(&self, tenant: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(key: &str) -> Creds {
        Creds {
            api_key: SecretString::from(key.to_owned()),
            mcp_token: None,
            company: "7".into(),
        }
    }

    #[test]
    fn kept_per_tenant_until_forgotten() {
        use secrecy::ExposeSecret;
        let cache = CredsCache::default();
        assert!(cache.get("t1", "7").is_none());
        cache.put("t1", &creds("k1"));
        cache.put("t2", &creds("k2"));
        let t1 = cache.get("t1", "9").unwrap();
        assert_eq!(t1.api_key.expose_secret(), "k1");
        // The company is the tenant's now, not the one of the first read.
        assert_eq!(t1.company, "9");
        cache.forget("t1");
        assert!(cache.get("t1", "7").is_none());
        assert_eq!(cache.get("t2", "7").unwrap().api_key.expose_secret(), "k2");
    }
}
