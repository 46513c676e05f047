//! OAuth 2.0 with GHL (API.md §7) and the access token of every tenant.
//!
//! [`OAuthClient`] is what the app's `/oauth/callback` and the CLI use: the `chooselocation`
//! authorisation URL, the code exchange, a refresh, and a location token minted from an
//! agency token (`POST /oauth/locationToken`).
//!
//! `TokenManager` gives each port call a bearer token for its tenant, from the
//! [`CredentialStore`], and guarantees:
//! - **a refresh token is used once**: GHL's refresh tokens are single-use and rotate
//!   (API.md §7). Refreshes go through `CredentialStore::with_credential_lock`, which re-reads
//!   the credential under the tenant's lock and stores the new pair before the lock is
//!   released — so across replicas at most one refresh per rotation, and the new tokens are
//!   persisted before anyone uses them. Within the process a per-tenant gate keeps concurrent
//!   callers from even queueing on the store lock once one of them refreshed;
//! - **proactive refresh** when less than `refresh_margin` (5 min) remains; a failed proactive
//!   refresh does not fail a call whose token is still valid;
//! - **one refresh-and-retry on 401**, done by the caller through
//!   `TokenManager::after_unauthorized`; a second 401 is final;
//! - **`invalid_grant`** (the refresh token was used or revoked): the store is read once more
//!   (another replica may have refreshed); only if it holds nothing newer the call fails as
//!   `Unauthorized`, saying that the app must be reinstalled on the location;
//! - **agency installs**: a credential of `user_type` `Company` is used to mint location tokens
//!   (`POST /oauth/locationToken`), kept in memory until they near expiry;
//! - **Private Integration Tokens** are used as they are; a 401 re-reads the store (a new PIT
//!   may have been set) and otherwise says to create a new token in GHL.
//!
//! Tokens are `SecretString`s end to end and never reach a log line or an error message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use domain::{LocationId, TenantId};
use ports::store::{
    AgencyStore, Credential, CredentialSecret, CredentialStore, NewCredential, Provider,
    RefreshError,
};
use ports::{ApiError, Priority, Scope, StoreError};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::budget::{BudgetKey, RateBudgets};
use crate::client::{ApiRequest, Transport, routes};
use crate::config::GhlAdapterConfig;
use crate::dto::TokenAnswer;
use crate::error::{CallError, ConfigError};

/// Who a token speaks for (`userType`, API.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    /// A sub-account (location) token.
    Location,
    /// An agency (company) token: mints location tokens.
    Company,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Location => "Location",
            Self::Company => "Company",
        }
    }

    fn parse(raw: &str) -> Self {
        if raw.eq_ignore_ascii_case("company") {
            Self::Company
        } else {
            Self::Location
        }
    }
}

/// What a code exchange (or a refresh) gives: the credential to store, and who it is for.
#[derive(Debug, Clone)]
pub struct Installation {
    /// Store it with `CredentialStore::put(tenant, Provider::Ghl, …)` (a location install) or
    /// `AgencyStore::put_agency` (a company install).
    pub credential: NewCredential,
    /// A company install covers the company's future locations.
    pub install_to_future: bool,
    pub user_type: UserType,
    /// Set for location installs.
    pub location_id: Option<LocationId>,
    pub company_id: Option<String>,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
}

/// A location of an agency's install (`GET /oauth/installedLocations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledLocation {
    pub location_id: LocationId,
    pub name: Option<String>,
}

/// A location token minted from an agency token. v2 gives no refresh token with it: mint
/// another when it expires.
#[derive(Debug, Clone)]
pub struct LocationToken {
    pub access_token: SecretString,
    pub expires_at: Option<DateTime<Utc>>,
    pub location_id: LocationId,
    pub scopes: Vec<String>,
}

/// How a token request went wrong.
enum TokenFailure {
    /// 400 "Invalid grant: …": the code or refresh token is used, expired or revoked.
    InvalidGrant(String),
    /// 400 "Location is not active": the refresh token works again once it is re-activated.
    LocationInactive(String),
    Other(ApiError),
}

/// The OAuth endpoints of API.md §7.
#[derive(Debug)]
pub struct OAuthClient {
    transport: Arc<Transport>,
    marketplace_base: Url,
    client_id: String,
    client_secret: SecretString,
    redirect_uri: Option<Url>,
    scopes: Vec<String>,
    app: String,
}

impl OAuthClient {
    /// A stand-alone client (for the CLI): its own HTTP client and rate budgets.
    pub fn new(config: &GhlAdapterConfig) -> Result<Self, ConfigError> {
        let budgets = Arc::new(RateBudgets::new(config.rate.clone()));
        let transport = Arc::new(Transport::new(config, budgets)?);
        Ok(Self::with_transport(config, transport))
    }

    pub(crate) fn with_transport(config: &GhlAdapterConfig, transport: Arc<Transport>) -> Self {
        Self {
            transport,
            marketplace_base: config.marketplace_base.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            redirect_uri: config.redirect_uri.clone(),
            scopes: config.scopes.clone(),
            app: config.budget_app().to_owned(),
        }
    }

    /// The page where a person picks the location to install the app on:
    /// `{marketplace}/v2/oauth/chooselocation?response_type=code&redirect_uri&client_id&scope`
    /// (API.md §7), plus `state`, which the callback must check (CSRF); GHL documents no
    /// `state` parameter, so the callback should also accept its absence knowingly.
    pub fn authorize_url(&self, state: &str) -> Result<Url, ConfigError> {
        if self.client_id.is_empty() {
            return Err(ConfigError::invalid(
                "client_id",
                "is needed for OAuth installs",
            ));
        }
        let redirect = self
            .redirect_uri
            .as_ref()
            .ok_or_else(|| ConfigError::invalid("redirect_uri", "is needed for OAuth installs"))?;
        let mut url = self
            .marketplace_base
            .join("v2/oauth/chooselocation")
            .map_err(|e| ConfigError::invalid("marketplace_base", e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect.as_str())
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", &self.scopes.join(" "))
            .append_pair("state", state);
        Ok(url)
    }

    fn client_fields(&self, grant_type: &str) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", self.client_id.clone()),
            (
                "client_secret",
                self.client_secret.expose_secret().to_owned(),
            ),
            ("grant_type", grant_type.to_owned()),
        ]
    }

    async fn token_request(&self, req: ApiRequest) -> Result<TokenAnswer, TokenFailure> {
        match self.transport.send(&req, None, None, None).await {
            Ok(answer) => answer
                .decode::<TokenAnswer>()
                .map_err(|e| TokenFailure::Other(e.into())),
            Err(CallError::Status { status, body, .. }) if status.as_u16() == 400 => {
                let message = body.messages().join("; ");
                let lower = message.to_ascii_lowercase();
                if lower.starts_with("invalid grant") || lower.contains("invalid_grant") {
                    Err(TokenFailure::InvalidGrant(message))
                } else if lower.contains("not active") {
                    Err(TokenFailure::LocationInactive(message))
                } else {
                    Err(TokenFailure::Other(ApiError::Invalid {
                        messages: body.messages(),
                    }))
                }
            }
            Err(CallError::Status { status, body, .. }) if status.as_u16() == 401 => {
                Err(TokenFailure::Other(ApiError::Unauthorized {
                    message: format!(
                        "GHL refused the app's client credentials (ghl.client_id / \
                         ghl.client_secret): {}",
                        body.messages().join("; ")
                    ),
                }))
            }
            Err(e) => Err(TokenFailure::Other(e.into())),
        }
    }

    pub(crate) fn installation(
        answer: TokenAnswer,
        previous: Option<&CredentialSecret>,
    ) -> Result<Installation, ApiError> {
        let (prev_refresh, prev_scopes, prev_type, prev_company) = match previous {
            Some(CredentialSecret::GhlOAuth {
                refresh_token,
                scopes,
                user_type,
                company_id,
                ..
            }) => (
                Some(refresh_token.clone()),
                scopes.clone(),
                Some(user_type.clone()),
                company_id.clone(),
            ),
            _ => (None, Vec::new(), None, None),
        };
        let refresh_token = match answer.refresh_token.clone().filter(|r| !r.is_empty()) {
            Some(r) => SecretString::from(r),
            // A rotation always returns a new one (API.md §7); keep the old if it did not.
            None => prev_refresh.ok_or_else(|| {
                ApiError::Unknown(anyhow::anyhow!(
                    "GHL's token answer carries no refresh_token"
                ))
            })?,
        };
        let scopes = match answer.scopes() {
            s if s.is_empty() => prev_scopes,
            s => s,
        };
        let user_type = answer
            .user_type
            .clone()
            .or(prev_type)
            .unwrap_or_else(|| "Location".to_owned());
        let company_id = answer.company_id.clone().or(prev_company);
        let location_id = match answer.location_id.as_deref().filter(|l| !l.is_empty()) {
            Some(l) => Some(LocationId::parse(l).map_err(|e| {
                ApiError::Unknown(anyhow::anyhow!(
                    "GHL's token answer names a bad locationId: {e}"
                ))
            })?),
            None => None,
        };
        let expires_at = answer
            .expires_in
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| Utc::now() + chrono::Duration::seconds(s));
        Ok(Installation {
            user_type: UserType::parse(&user_type),
            credential: NewCredential {
                secret: CredentialSecret::GhlOAuth {
                    access_token: SecretString::from(answer.access_token),
                    refresh_token,
                    scopes: scopes.clone(),
                    user_type,
                    company_id: company_id.clone(),
                },
                expires_at,
            },
            location_id,
            company_id,
            user_id: answer.user_id,
            install_to_future: answer.install_to_future_locations.unwrap_or(false),
            scopes,
        })
    }

    /// Exchange the `code` of the OAuth callback (API.md §7, grant `authorization_code`).
    pub async fn exchange_code(&self, code: &str) -> Result<Installation, ApiError> {
        let mut form = self.client_fields("authorization_code");
        form.push(("code", code.to_owned()));
        if let Some(r) = &self.redirect_uri {
            form.push(("redirect_uri", r.as_str().to_owned()));
        }
        let req = ApiRequest::new(&routes::EXCHANGE_CODE, "/oauth/token").form(form);
        match self.token_request(req).await {
            Ok(answer) => Self::installation(answer, None),
            Err(TokenFailure::InvalidGrant(m)) => Err(ApiError::Unauthorized {
                message: format!(
                    "GHL refused the authorisation code ({m}): codes work once and expire \
                     quickly; start the install again"
                ),
            }),
            Err(TokenFailure::LocationInactive(m)) => Err(ApiError::Unauthorized {
                message: format!("GHL refused the install: {m}"),
            }),
            Err(TokenFailure::Other(e)) => Err(e),
        }
    }

    /// Refresh a stored OAuth credential (grant `refresh_token`). The old refresh token is
    /// spent by this call: store the result before using it.
    pub async fn refresh(&self, credential: &CredentialSecret) -> Result<Installation, ApiError> {
        self.refresh_inner(credential, None).await
    }

    async fn refresh_inner(
        &self,
        credential: &CredentialSecret,
        invalid_grant: Option<&AtomicBool>,
    ) -> Result<Installation, ApiError> {
        let CredentialSecret::GhlOAuth {
            refresh_token,
            user_type,
            ..
        } = credential
        else {
            return Err(ApiError::Unauthorized {
                message: "only OAuth credentials can be refreshed".to_owned(),
            });
        };
        let mut form = self.client_fields("refresh_token");
        form.push(("refresh_token", refresh_token.expose_secret().to_owned()));
        // GHL's enum is `Company | Location` ([O2]); a credential stored under another
        // spelling still refreshes as what it is.
        form.push(("user_type", UserType::parse(user_type).as_str().to_owned()));
        let req = ApiRequest::new(&routes::REFRESH_TOKEN, "/oauth/token").form(form);
        match self.token_request(req).await {
            Ok(answer) => Self::installation(answer, Some(credential)),
            Err(TokenFailure::InvalidGrant(m)) => {
                if let Some(flag) = invalid_grant {
                    flag.store(true, Ordering::SeqCst);
                }
                Err(ApiError::Unauthorized {
                    message: format!("GHL refused the refresh token: {m}"),
                })
            }
            Err(TokenFailure::LocationInactive(m)) => Err(ApiError::Unauthorized {
                message: format!(
                    "{m}: GHL refuses tokens while the location is inactive; the stored refresh \
                     token works again once it is re-activated"
                ),
            }),
            Err(TokenFailure::Other(e)) => Err(e),
        }
    }

    /// The agency's own access token (for its calls, such as listing its installed
    /// locations), refreshed first under the company's lock when it expires within `margin`:
    /// the same single refresh its tenants' calls take.
    pub async fn company_access(
        self: &Arc<Self>,
        agencies: &dyn AgencyStore,
        company_id: &str,
        margin: std::time::Duration,
    ) -> Result<SecretString, ApiError> {
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::minutes(5));
        let oauth = self.clone();
        let refresher: ports::store::Refresher = Box::new(move |current: Credential| {
            Box::pin(async move {
                tracing::info!("refreshing the GHL agency token");
                Ok(oauth.refresh(&current.secret).await?.credential)
            })
        });
        let credential = agencies
            .with_agency_lock(
                company_id,
                Box::new(move |c| Due::Expiring.applies(c, Utc::now(), margin)),
                refresher,
            )
            .await
            .map_err(|e| match e {
                RefreshError::Api(e) => e,
                RefreshError::Store(StoreError::NotFound { .. }) => ApiError::Unauthorized {
                    message: format!(
                        "GHL company {company_id} has no agency install stored: install the app agency-wide (`oauth url --agency`)"
                    ),
                },
                RefreshError::Store(e) => ApiError::Unknown(anyhow::Error::new(e)),
            })?;
        match credential.secret {
            CredentialSecret::GhlOAuth { access_token, .. } => Ok(access_token),
            _ => Err(ApiError::Unauthorized {
                message: format!(
                    "the agency token of GHL company {company_id} is not an OAuth token"
                ),
            }),
        }
    }

    /// Mint a location token from an agency (Company) access token (`POST
    /// /oauth/locationToken`, form `companyId`, `locationId`, API.md §7).
    /// The locations of the company the app is installed on (`GET /oauth/installedLocations`,
    /// agency token, scope `oauth.readonly`; every page). Needs the app id (`ghl.app_id`).
    pub async fn installed_locations(
        &self,
        agency_token: &SecretString,
        company_id: &str,
        app_id: &str,
    ) -> Result<Vec<InstalledLocation>, ApiError> {
        if app_id.trim().is_empty() {
            return Err(ApiError::Invalid {
                messages: vec!["ghl.app_id is not set: listing an agency's installed locations needs the marketplace app's id".into()],
            });
        }
        const PAGE: u32 = 100;
        let key = BudgetKey::new(self.app.clone(), company_id.to_owned());
        let mut out = Vec::new();
        let mut skip = 0u32;
        loop {
            let req = ApiRequest::new(&routes::INSTALLED_LOCATIONS, "/oauth/installedLocations")
                .query("companyId", company_id)
                .query("appId", app_id)
                .query("isInstalled", "true")
                .query("skip", skip.to_string())
                .query("limit", PAGE.to_string());
            let answer = self
                .transport
                .send(
                    &req,
                    Some(agency_token),
                    Some((&key, Priority::RealTime)),
                    None,
                )
                .await?;
            let page: crate::dto::InstalledLocationsAnswer = answer.decode()?;
            let n = page.locations.len();
            for l in page.locations {
                if l.is_installed == Some(false) {
                    continue;
                }
                let Some(id) = l.id else { continue };
                let location_id = LocationId::parse(&id).map_err(|e| {
                    ApiError::Unknown(anyhow::anyhow!("GHL listed a bad location id: {e}"))
                })?;
                out.push(InstalledLocation {
                    location_id,
                    name: l.name,
                });
            }
            skip += u32::try_from(n).unwrap_or(PAGE);
            // A short page ends it; so does reaching the total (whatever it counts: GHL's doc
            // reads as the company's locations, not the ones that match).
            if n < PAGE as usize || page.count.is_some_and(|total| u64::from(skip) >= total) {
                return Ok(out);
            }
        }
    }

    pub async fn location_token(
        &self,
        agency_token: &SecretString,
        company_id: &str,
        location: &LocationId,
    ) -> Result<LocationToken, ApiError> {
        let req = ApiRequest::new(&routes::LOCATION_TOKEN, "/oauth/locationToken").form(vec![
            ("companyId", company_id.to_owned()),
            ("locationId", location.as_str().to_owned()),
        ]);
        // Agency calls count against the company's budget (API.md §8: per resource).
        let key = BudgetKey::new(self.app.clone(), company_id.to_owned());
        let answer = self
            .transport
            .send(
                &req,
                Some(agency_token),
                Some((&key, Priority::RealTime)),
                None,
            )
            .await?;
        let t: TokenAnswer = answer.decode()?;
        let scopes = t.scopes();
        Ok(LocationToken {
            expires_at: t
                .expires_in
                .and_then(|s| i64::try_from(s).ok())
                .map(|s| Utc::now() + chrono::Duration::seconds(s)),
            access_token: SecretString::from(t.access_token),
            location_id: location.clone(),
            scopes,
        })
    }
}

// ------------------------------------------------------------------------------- tokens

/// The bearer token of one call, and where it came from (for the 401 path).
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub secret: SecretString,
    /// The stored credential's version it was taken from.
    pub version: i64,
    pub kind: TokenKind,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("version", &self.version)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    OAuth,
    Private,
    /// A location token minted from an agency credential.
    Derived,
}

/// When a stored credential needs refreshing.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// Less than the margin remains.
    Expiring,
    /// GHL refused the token of this version (or it is expiring anyway).
    Rejected(i64),
}

impl Due {
    fn applies(self, c: &Credential, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        let expiring = c.expires_at.is_some_and(|e| e - now < margin);
        match self {
            Self::Expiring => expiring,
            Self::Rejected(v) => c.version <= v || expiring,
        }
    }
}

#[derive(Clone)]
struct Derived {
    token: SecretString,
    expires_at: Option<DateTime<Utc>>,
    agency_version: i64,
}

/// Tokens per tenant (see the module docs).
pub(crate) struct TokenManager {
    store: Arc<dyn CredentialStore>,
    oauth: Arc<OAuthClient>,
    margin: chrono::Duration,
    cache: Mutex<HashMap<TenantId, Credential>>,
    derived: Mutex<HashMap<TenantId, Derived>>,
    gates: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn same(a: &SecretString, b: &SecretString) -> bool {
    a.expose_secret() == b.expose_secret()
}

impl TokenManager {
    pub fn new(
        store: Arc<dyn CredentialStore>,
        oauth: Arc<OAuthClient>,
        margin: std::time::Duration,
    ) -> Self {
        Self {
            store,
            oauth,
            margin: chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::minutes(5)),
            cache: Mutex::new(HashMap::new()),
            derived: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// Forget what is cached for a tenant (after an uninstall or a credential change).
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.cache).remove(tenant);
        lock(&self.derived).remove(tenant);
    }

    fn cached(&self, tenant: &TenantId) -> Option<Credential> {
        lock(&self.cache).get(tenant).cloned()
    }

    fn remember(&self, c: &Credential) {
        let mut cache = lock(&self.cache);
        let keep_newer = cache
            .get(&c.tenant)
            .is_some_and(|old| old.version > c.version);
        if !keep_newer {
            cache.insert(c.tenant.clone(), c.clone());
        }
    }

    fn gate(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.gates).entry(tenant.clone()).or_default().clone()
    }

    async fn load(&self, tenant: &TenantId) -> Result<Credential, ApiError> {
        let c = self
            .store
            .get(tenant, Provider::Ghl)
            .await
            .map_err(|e| store_error(tenant, e))?;
        self.remember(&c);
        Ok(c)
    }

    /// The token for a call of this scope, refreshed first when it is about to expire.
    pub async fn access(&self, scope: &Scope) -> Result<AccessToken, ApiError> {
        let tenant = &scope.tenant.id;
        let cred = match self.cached(tenant) {
            Some(c) => c,
            None => self.load(tenant).await?,
        };
        let cred = if matches!(cred.secret, CredentialSecret::GhlOAuth { .. })
            && Due::Expiring.applies(&cred, Utc::now(), self.margin)
        {
            match self.refresh(scope, Due::Expiring).await {
                Ok(c) => c,
                // Still valid for a while: use it, the next call tries again.
                Err(e) if cred.expires_at.is_some_and(|x| x > Utc::now()) => {
                    tracing::warn!(tenant = %tenant, error = %e, "proactive token refresh failed");
                    cred
                }
                Err(e) => return Err(e),
            }
        } else {
            cred
        };
        self.token_of(scope, &cred, false).await
    }

    /// Refresh the tenant's OAuth token now, whatever its expiry (an operator's action), and
    /// drop the location token minted from the old one. The new token's expiry.
    pub async fn refresh_now(
        &self,
        scope: &Scope,
    ) -> Result<Option<chrono::DateTime<Utc>>, ApiError> {
        let tenant = &scope.tenant.id;
        let current = self.load(tenant).await?;
        match &current.secret {
            CredentialSecret::GhlOAuth { .. } => {
                let fresh = self.refresh(scope, Due::Rejected(current.version)).await?;
                lock(&self.derived).remove(tenant);
                Ok(fresh.expires_at)
            }
            CredentialSecret::GhlPrivate { .. } => Err(ApiError::unsupported(format!(
                "refreshing the private integration token of tenant {tenant}: it has no \
                 refresh; create a new one in GHL and store it"
            ))),
            CredentialSecret::Ekyte { .. } => Err(ApiError::Unauthorized {
                message: format!(
                    "the GHL credential of tenant {tenant} holds eKyte secrets; store a GHL install"
                ),
            }),
        }
    }

    /// After GHL answered 401 to `failed`: a newer token, or `Unauthorized` with what to do.
    pub async fn after_unauthorized(
        &self,
        scope: &Scope,
        failed: &AccessToken,
    ) -> Result<AccessToken, ApiError> {
        let tenant = &scope.tenant.id;
        match failed.kind {
            TokenKind::Private => {
                let c = self.load(tenant).await?;
                let t = self.token_of(scope, &c, false).await?;
                if same(&t.secret, &failed.secret) {
                    return Err(ApiError::Unauthorized {
                        message: format!(
                            "GHL refused the private integration token of tenant {tenant} \
                             (location {}): create a new one in GHL (Settings → Private \
                             Integrations) and store it",
                            scope.tenant.location_id
                        ),
                    });
                }
                Ok(t)
            }
            TokenKind::OAuth => {
                let c = self.refresh(scope, Due::Rejected(failed.version)).await?;
                let t = self.token_of(scope, &c, false).await?;
                if same(&t.secret, &failed.secret) {
                    return Err(ApiError::Unauthorized {
                        message: format!(
                            "GHL refused the access token of tenant {tenant} and no newer one \
                             could be had: the app must be reinstalled on location {}",
                            scope.tenant.location_id
                        ),
                    });
                }
                Ok(t)
            }
            TokenKind::Derived => {
                let c = match self.cached(tenant) {
                    Some(c) => c,
                    None => self.load(tenant).await?,
                };
                self.token_of(scope, &c, true).await
            }
        }
    }

    async fn token_of(
        &self,
        scope: &Scope,
        cred: &Credential,
        force_mint: bool,
    ) -> Result<AccessToken, ApiError> {
        match &cred.secret {
            CredentialSecret::GhlPrivate { token } => Ok(AccessToken {
                secret: token.clone(),
                version: cred.version,
                kind: TokenKind::Private,
            }),
            CredentialSecret::GhlOAuth { user_type, .. }
                if UserType::parse(user_type) == UserType::Company =>
            {
                self.location_token(scope, cred, force_mint).await
            }
            CredentialSecret::GhlOAuth { access_token, .. } => Ok(AccessToken {
                secret: access_token.clone(),
                version: cred.version,
                kind: TokenKind::OAuth,
            }),
            CredentialSecret::Ekyte { .. } => Err(ApiError::Unauthorized {
                message: format!(
                    "the GHL credential of tenant {} holds eKyte secrets; store a GHL install",
                    scope.tenant.id
                ),
            }),
        }
    }

    /// A location token for an agency credential: cached, or minted (once more after
    /// refreshing the agency token if GHL refused it).
    async fn location_token(
        &self,
        scope: &Scope,
        agency: &Credential,
        force: bool,
    ) -> Result<AccessToken, ApiError> {
        let tenant = &scope.tenant.id;
        if !force
            && let Some(d) = lock(&self.derived).get(tenant).cloned()
            && d.agency_version == agency.version
            && d.expires_at.is_none_or(|e| e - Utc::now() > self.margin)
        {
            return Ok(AccessToken {
                secret: d.token,
                version: agency.version,
                kind: TokenKind::Derived,
            });
        }
        let mut agency = agency.clone();
        let mut refreshed = false;
        loop {
            let CredentialSecret::GhlOAuth {
                access_token,
                company_id,
                ..
            } = &agency.secret
            else {
                return Err(ApiError::Unauthorized {
                    message: format!("tenant {tenant}: the agency credential is not OAuth"),
                });
            };
            let company = company_id.clone().ok_or_else(|| ApiError::Unauthorized {
                message: format!(
                    "tenant {tenant}: the agency credential names no company; reinstall the app"
                ),
            })?;
            match self
                .oauth
                .location_token(access_token, &company, &scope.tenant.location_id)
                .await
            {
                Ok(t) => {
                    lock(&self.derived).insert(
                        tenant.clone(),
                        Derived {
                            token: t.access_token.clone(),
                            expires_at: t.expires_at,
                            agency_version: agency.version,
                        },
                    );
                    return Ok(AccessToken {
                        secret: t.access_token,
                        version: agency.version,
                        kind: TokenKind::Derived,
                    });
                }
                Err(ApiError::Unauthorized { .. }) if !refreshed => {
                    refreshed = true;
                    agency = self.refresh(scope, Due::Rejected(agency.version)).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Refresh under the store's lock when `due` still holds there (see the module docs), and
    /// remember how a refresh that was attempted went, for the operator.
    async fn refresh(&self, scope: &Scope, due: Due) -> Result<Credential, ApiError> {
        let attempted = Arc::new(AtomicBool::new(false));
        let outcome = self.refresh_once(scope, due, attempted.clone()).await;
        let tenant = &scope.tenant.id;
        let failed = outcome.as_ref().err().map(ToString::to_string);
        if (attempted.load(Ordering::SeqCst) || failed.is_some())
            && let Err(e) = self.store.note_refresh(tenant, Provider::Ghl, failed).await
        {
            tracing::warn!(tenant = %tenant, error = %e, "could not record how the token refresh went");
        }
        outcome
    }

    async fn refresh_once(
        &self,
        scope: &Scope,
        due: Due,
        attempted: Arc<AtomicBool>,
    ) -> Result<Credential, ApiError> {
        let tenant = &scope.tenant.id;
        let gate = self.gate(tenant);
        let _turn = gate.lock().await;
        let margin = self.margin;
        if let Some(c) = self.cached(tenant)
            && !due.applies(&c, Utc::now(), margin)
        {
            return Ok(c);
        }
        let invalid_grant = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicI64::new(i64::MIN));
        let refresher: ports::store::Refresher = {
            let oauth = self.oauth.clone();
            let invalid_grant = invalid_grant.clone();
            let seen = seen.clone();
            Box::new(move |current: Credential| {
                seen.store(current.version, Ordering::SeqCst);
                attempted.store(true, Ordering::SeqCst);
                Box::pin(async move {
                    tracing::info!(tenant = %current.tenant, "refreshing the GHL access token");
                    let install = oauth
                        .refresh_inner(&current.secret, Some(invalid_grant.as_ref()))
                        .await?;
                    Ok(install.credential)
                })
            })
        };
        let outcome = self
            .store
            .with_credential_lock(
                tenant,
                Provider::Ghl,
                Box::new(move |c| due.applies(c, Utc::now(), margin)),
                refresher,
            )
            .await;
        match outcome {
            Ok(c) => {
                self.remember(&c);
                Ok(c)
            }
            Err(RefreshError::Api(e)) if invalid_grant.load(Ordering::SeqCst) => {
                // Another replica may have refreshed outside our view: read once more.
                let spent = seen.load(Ordering::SeqCst);
                match self.store.get(tenant, Provider::Ghl).await {
                    Ok(c) if c.version > spent => {
                        self.remember(&c);
                        Ok(c)
                    }
                    _ => {
                        self.forget(tenant);
                        Err(ApiError::Unauthorized {
                            message: format!(
                                "{e}; the stored refresh token of tenant {tenant} is spent or \
                                 revoked (invalid_grant): the app must be reinstalled on \
                                 location {}",
                                scope.tenant.location_id
                            ),
                        })
                    }
                }
            }
            Err(RefreshError::Api(e)) => Err(e),
            Err(RefreshError::Store(e)) => Err(store_error(tenant, e)),
        }
    }
}

/// The store's errors, in the API port's terms (a call without credentials cannot be made).
fn store_error(tenant: &TenantId, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => ApiError::Unauthorized {
            message: format!(
                "tenant {tenant} has no GHL credential: install the app on its location or \
                 store a private integration token"
            ),
        },
        StoreError::Crypto { message } => ApiError::Unauthorized {
            message: format!(
                "the GHL credential of tenant {tenant} cannot be decrypted: {message}"
            ),
        },
        StoreError::Corrupt { message } => ApiError::Unauthorized {
            message: format!("the GHL credential of tenant {tenant} is unreadable: {message}"),
        },
        other => ApiError::Transient {
            message: format!("reading the GHL credential of tenant {tenant}"),
            source: Some(Box::new(other)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OAuthClient {
        let config = GhlAdapterConfig {
            client_id: "cid".into(),
            redirect_uri: Some(Url::parse("https://app.example/oauth/callback").unwrap()),
            scopes: vec!["contacts.readonly".into(), "contacts.write".into()],
            ..GhlAdapterConfig::default()
        };
        OAuthClient::new(&config).unwrap()
    }

    #[test]
    fn the_authorisation_url_is_the_marketplace_chooselocation() {
        let url = client().authorize_url("st4te").unwrap();
        assert_eq!(url.path(), "/v2/oauth/chooselocation");
        assert_eq!(url.host_str(), Some("marketplace.gohighlevel.com"));
        let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["redirect_uri"], "https://app.example/oauth/callback");
        assert_eq!(q["scope"], "contacts.readonly contacts.write");
        assert_eq!(q["state"], "st4te");
    }

    #[test]
    fn due_follows_expiry_and_rejection() {
        let now = Utc::now();
        let c = |version, minutes: i64| Credential {
            tenant: TenantId::parse("t").unwrap(),
            provider: Provider::Ghl,
            secret: CredentialSecret::GhlPrivate {
                token: SecretString::from("x".to_owned()),
            },
            expires_at: Some(now + chrono::Duration::minutes(minutes)),
            version,
            updated_at: now,
        };
        let m = chrono::Duration::minutes(5);
        assert!(Due::Expiring.applies(&c(1, 4), now, m));
        assert!(!Due::Expiring.applies(&c(1, 6), now, m));
        assert!(Due::Rejected(1).applies(&c(1, 60), now, m));
        assert!(!Due::Rejected(1).applies(&c(2, 60), now, m));
    }
}
