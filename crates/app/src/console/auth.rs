//! Who is at the console: accounts from the configuration, password logins (argon2) or a
//! trusted proxy's header, signed session cookies, CSRF tokens and the login rate limit.
//!
//! Sessions are stateless: the cookie is `<user>.<expiry>.<HMAC>` under a key derived from the
//! credentials key (so any ingress replica accepts it, and a key rotation logs everyone out),
//! and the CSRF token of a session is an HMAC of its cookie under another derived key. A
//! logout clears the cookie; the session's expiry bounds a stolen one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use domain::TenantId;

use crate::config::{ConsoleAccount, ConsoleConfig, ConsoleRole};
use crate::oauth_state::StateSigner;

/// The session cookie's name.
pub const COOKIE: &str = "ges_console";

/// Wrong passwords a user may type in a minute; the next attempt is refused unchecked.
pub const FAILURES_PER_MINUTE: usize = 9;

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub user: String,
    pub role: ConsoleRole,
    /// The tenants it may see; `None`: all.
    pub tenants: Option<Vec<TenantId>>,
    /// The session cookie's value (empty with a proxy's identity, which needs no cookie).
    pub session: String,
}

impl Who {
    pub fn may_see(&self, tenant: &TenantId) -> bool {
        self.tenants.as_ref().is_none_or(|t| t.contains(tenant))
    }

    pub fn may_act(&self) -> bool {
        self.role == ConsoleRole::Operator
    }
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user or wrong password (the same answer for both).
    Wrong,
    /// Too many wrong passwords in the last minute: not checked.
    Throttled,
}

/// The console's gatekeeper.
pub struct Gate {
    accounts: Vec<ConsoleAccount>,
    trusted_header: Option<String>,
    sessions: StateSigner,
    csrf: StateSigner,
    ttl: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Gate {
    /// `key` is the credentials key's bytes (or any secret of the deployment).
    pub fn new(config: &ConsoleConfig, key: &[u8]) -> Self {
        let derive = |purpose: &str| {
            let mut k = key.to_vec();
            k.extend_from_slice(purpose.as_bytes());
            StateSigner::new(
                k,
                chrono::Duration::from_std(config.session_ttl)
                    .unwrap_or(chrono::Duration::hours(8)),
            )
        };
        let header = config.trusted_header.trim();
        Self {
            accounts: config.accounts.clone(),
            trusted_header: (!header.is_empty()).then(|| header.to_ascii_lowercase()),
            sessions: derive("\0console-session"),
            csrf: derive("\0console-csrf"),
            ttl: config.session_ttl,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether users log in with a password (no trusted proxy header).
    pub fn password_logins(&self) -> bool {
        self.trusted_header.is_none()
    }

    fn account(&self, user: &str) -> Option<&ConsoleAccount> {
        self.accounts
            .iter()
            .find(|a| a.user.eq_ignore_ascii_case(user))
    }

    fn who(&self, account: &ConsoleAccount, session: String) -> Who {
        Who {
            user: account.user.clone(),
            role: account.role,
            tenants: (!account.tenants.is_empty()).then(|| {
                account
                    .tenants
                    .iter()
                    .filter_map(|t| TenantId::parse(t).ok())
                    .collect()
            }),
            session,
        }
    }

    /// The user of a request: the trusted proxy's header when configured, else a valid
    /// session cookie of a user still configured.
    pub fn identify(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Who> {
        if let Some(header) = &self.trusted_header {
            let user = headers.get(header.as_str())?.to_str().ok()?.trim();
            return self.account(user).map(|a| self.who(a, String::new()));
        }
        let cookie = cookie(headers, COOKIE)?;
        let user = self.sessions.verify_subject(cookie, now).ok()?;
        self.account(user).map(|a| self.who(a, cookie.to_owned()))
    }

    /// Check a password login; on success the new session cookie's value.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<String, LoginRefused> {
        let key = user.trim().to_ascii_lowercase();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let recent = failures.entry(key.clone()).or_default();
            let minute_ago = Instant::now().checked_sub(Duration::from_secs(60));
            while recent
                .front()
                .is_some_and(|t| minute_ago.is_some_and(|m| *t < m))
            {
                recent.pop_front();
            }
            if recent.len() >= FAILURES_PER_MINUTE {
                tracing::warn!(user = %key, "console login refused unchecked: too many wrong passwords in a minute");
                return Err(LoginRefused::Throttled);
            }
        }
        let ok = self.account(&key).is_some_and(|a| {
            let hash = a.password_hash.expose_secret();
            PasswordHash::new(hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        });
        if !ok {
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_default()
                .push_back(Instant::now());
            tracing::info!(user = %key, "console login refused: wrong user or password");
            return Err(LoginRefused::Wrong);
        }
        let account = self.account(&key).map(|a| a.user.clone()).unwrap_or(key);
        Ok(self.sessions.sign_subject(&account, now))
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf_token(&self, who: &Who) -> String {
        self.csrf.tag(&format!("{}|{}", who.user, who.session))
    }

    pub fn csrf_ok(&self, who: &Who, token: &str) -> bool {
        self.csrf
            .verify_tag(&format!("{}|{}", who.user, who.session), token)
    }
}

/// A cookie's value from the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request came for a loopback host (where `Secure` cookies cannot be set over
/// plain HTTP).
pub fn loopback(headers: &HeaderMap) -> bool {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// The `Set-Cookie` value of a session (or of its removal, with an empty value).
pub fn set_cookie(value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;

    use super::*;

    pub(crate) fn hash(password: &str) -> String {
        let salt = SaltString::encode_b64(b"console-test-salt").unwrap();
        Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
    }

    fn gate() -> Gate {
        let config = ConsoleConfig {
            enabled: true,
            session_ttl: Duration::from_secs(3600),
            trusted_header: String::new(),
            accounts: vec![ConsoleAccount {
                user: "ana".into(),
                password_hash: hash("right horse").into(),
                role: ConsoleRole::Viewer,
                tenants: vec!["acme".into()],
            }],
            ghl_contact_url: String::new(),
            ekyte_workspace_url: String::new(),
            ekyte_task_url: String::new(),
        };
        Gate::new(&config, b"a key of the deployment")
    }

    #[test]
    fn a_session_names_its_user_until_it_expires() {
        let g = gate();
        let now = Utc::now();
        assert_eq!(g.login("ana", "wrong", now), Err(LoginRefused::Wrong));
        let cookie = g.login("Ana", "right horse", now).expect("login");
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("other=1; {COOKIE}={cookie}").parse().unwrap(),
        );
        let who = g.identify(&headers, now).expect("signed in");
        assert_eq!(who.user, "ana");
        assert!(who.may_see(&TenantId::parse("acme").unwrap()));
        assert!(!who.may_see(&TenantId::parse("other").unwrap()));
        assert!(!who.may_act());
        let token = g.csrf_token(&who);
        assert!(g.csrf_ok(&who, &token));
        assert!(!g.csrf_ok(&who, "forged"));
        assert!(
            g.identify(&headers, now + chrono::Duration::hours(2))
                .is_none(),
            "expired"
        );
        let forged = cookie.replacen("ana", "bob", 1);
        headers.insert(
            axum::http::header::COOKIE,
            format!("{COOKIE}={forged}").parse().unwrap(),
        );
        assert!(g.identify(&headers, now).is_none(), "forged");
    }

    #[test]
    fn the_tenth_wrong_password_in_a_minute_is_not_checked() {
        let g = gate();
        let now = Utc::now();
        for _ in 0..FAILURES_PER_MINUTE {
            assert_eq!(g.login("ana", "guess", now), Err(LoginRefused::Wrong));
        }
        // Even the right password: the limit comes before the check.
        assert_eq!(
            g.login("ana", "right horse", now),
            Err(LoginRefused::Throttled)
        );
    }
}
