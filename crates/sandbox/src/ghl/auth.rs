//! Who may call the simulator: OAuth clients, authorization codes, access and refresh tokens,
//! Private Integration Tokens (API.md §1, §7).
//!
//! Guarantees: a refresh token works once (a reuse gets 400 "Invalid grant: refresh token is
//! invalid") unless the configured grace window is open, in which case an identical refresh
//! within the window gets the very same new pair ([CHLOG]); an access token works until its
//! lifetime ends, including after it was refreshed; every token is bound to exactly one
//! location or company.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::config::{OAuthClientSpec, OAuthConfig, PitSpec, RefreshUserType};
use super::error::{ApiError, ApiResult};

/// What a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "userType", content = "id")]
pub enum Principal {
    /// A sub-account token (`userType: "Location"`).
    Location(String),
    /// An agency token (`userType: "Company"`).
    Company(String),
}

impl Principal {
    pub fn id(&self) -> &str {
        match self {
            Self::Location(id) | Self::Company(id) => id,
        }
    }

    pub fn user_type(&self) -> &'static str {
        match self {
            Self::Location(_) => "Location",
            Self::Company(_) => "Company",
        }
    }
}

/// A caller, as the API routes see it once its token checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthCtx {
    pub principal: Principal,
    /// The rate-limit budget key: the OAuth client id, or the PIT's app.
    pub app_key: String,
    pub app_id: String,
    pub version_id: String,
    /// `None` = every scope.
    pub scopes: Option<BTreeSet<String>>,
    pub client_id: Option<String>,
    pub company_id: String,
}

impl AuthCtx {
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.as_ref().is_none_or(|s| s.contains(scope))
    }

    pub fn location_id(&self) -> Option<&str> {
        match &self.principal {
            Principal::Location(id) => Some(id),
            Principal::Company(_) => None,
        }
    }

    /// 403 unless this token belongs to `location_id`.
    pub fn require_location(&self, location_id: &str) -> ApiResult<()> {
        if self.location_id() == Some(location_id) {
            Ok(())
        } else {
            Err(ApiError::wrong_location())
        }
    }
}

#[derive(Debug, Clone)]
struct Client {
    spec: OAuthClientSpec,
}

impl Client {
    fn app_id(&self) -> String {
        if self.spec.app_id.is_empty() {
            format!("app-{}", self.spec.client_id)
        } else {
            self.spec.app_id.clone()
        }
    }

    fn version_id(&self) -> String {
        if self.spec.version_id.is_empty() {
            format!("{}-v1", self.app_id())
        } else {
            self.spec.version_id.clone()
        }
    }
}

/// What a person approved in a bulk installation of an agency app ([O2]
/// `GetAccessCodeSuccessfulResponseDto`): it travels with the Company token and its refreshes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkGrant {
    pub approved_locations: Vec<String>,
    pub install_to_future: bool,
    pub approve_all: bool,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    principal: Principal,
    company_id: String,
    scopes: Option<BTreeSet<String>>,
    bulk: Option<BulkGrant>,
    expires_at: Instant,
}

#[derive(Debug, Clone)]
struct AccessToken {
    ctx: AuthCtx,
    bulk: Option<BulkGrant>,
    /// `None` for PITs (no expiry).
    expires_at: Option<Instant>,
}

/// The answer given when a refresh token was used, kept for the grace window.
#[derive(Debug, Clone)]
struct Consumed {
    at: Instant,
    client_secret: String,
    access_token: String,
    refresh_token: String,
}

#[derive(Debug, Clone)]
struct RefreshToken {
    client_id: String,
    principal: Principal,
    company_id: String,
    scopes: Option<BTreeSet<String>>,
    bulk: Option<BulkGrant>,
    consumed: Option<Consumed>,
}

/// The form fields of `POST /oauth/token` ([O2] `GetAccessCodebodyDto`).
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub refresh_token: Option<String>,
    pub user_type: Option<String>,
}

/// The outcome of a token request, for the named-event counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    CodeExchanged,
    Refreshed,
    /// A reuse inside the grace window got the same pair again.
    RefreshReplayed,
}

/// A token pair handed out directly by the control API (as if a code had been exchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

/// Every scope some route of this simulator checks (API.md §7 "Scopes needed here").
pub const SCOPES: &[&str] = &[
    "contacts.readonly",
    "contacts.write",
    "businesses.readonly",
    "businesses.write",
    "locations.readonly",
    "locations/customFields.readonly",
    "locations/tasks.readonly",
    "calendars/events.readonly",
    "calendars.readonly",
    "oauth.readonly",
    "oauth.write",
];

fn scope_set(scopes: &Option<Vec<String>>) -> Option<BTreeSet<String>> {
    scopes.as_ref().map(|s| s.iter().cloned().collect())
}

fn scope_string(scopes: &Option<BTreeSet<String>>) -> String {
    match scopes {
        Some(s) => s.iter().cloned().collect::<Vec<_>>().join(" "),
        None => SCOPES.join(" "),
    }
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// All credentials the simulator knows.
#[derive(Debug)]
pub struct AuthRegistry {
    cfg: OAuthConfig,
    clients: HashMap<String, Client>,
    codes: HashMap<String, Code>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
}

impl AuthRegistry {
    pub fn new(cfg: OAuthConfig) -> Self {
        Self {
            cfg,
            clients: HashMap::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
        }
    }

    pub fn set_config(&mut self, cfg: OAuthConfig) {
        self.cfg = cfg;
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.cfg
    }

    pub fn register_client(&mut self, spec: OAuthClientSpec) -> ApiResult<()> {
        if spec.client_id.is_empty() || spec.client_secret.is_empty() {
            return Err(ApiError::unprocessable(vec![
                "clientId and clientSecret should not be empty".to_owned(),
            ]));
        }
        self.clients.insert(spec.client_id.clone(), Client { spec });
        Ok(())
    }

    /// Register a PIT; returns the token string.
    pub fn register_pit(
        &mut self,
        spec: &PitSpec,
        company_of: impl Fn(&str) -> Option<String>,
    ) -> ApiResult<String> {
        if spec.scopes.iter().all(|s| s.trim().is_empty()) {
            return Err(ApiError::unprocessable(vec![
                "scopes should not be empty: a Private Integration Token is created with the \
                 scopes it may use"
                    .to_owned(),
            ]));
        }
        let principal = match (&spec.location_id, &spec.company_id) {
            (Some(l), _) => Principal::Location(l.clone()),
            (None, Some(c)) => Principal::Company(c.clone()),
            (None, None) => {
                return Err(ApiError::unprocessable(vec![
                    "locationId or companyId should not be empty".to_owned(),
                ]));
            }
        };
        let company_id = match &principal {
            Principal::Location(l) => {
                company_of(l).ok_or_else(|| ApiError::not_found("Location"))?
            }
            Principal::Company(c) => c.clone(),
        };
        let token = if spec.token.is_empty() {
            random_token("pit")
        } else {
            spec.token.clone()
        };
        let app_id = if spec.app_id.is_empty() {
            format!("pit-app-{}", &token[..token.len().min(12)])
        } else {
            spec.app_id.clone()
        };
        let ctx = AuthCtx {
            principal,
            app_key: format!("pit:{app_id}"),
            app_id: app_id.clone(),
            version_id: format!("{app_id}-v1"),
            scopes: Some(spec.scopes.iter().cloned().collect()),
            client_id: None,
            company_id,
        };
        self.access.insert(
            token.clone(),
            AccessToken {
                ctx,
                bulk: None,
                expires_at: None,
            },
        );
        Ok(token)
    }

    /// `(appId, versionId)` of a registered client; 400 for an unknown one.
    pub fn client_app(&self, client_id: &str) -> ApiResult<(String, String)> {
        self.clients
            .get(client_id)
            .map(|c| (c.app_id(), c.version_id()))
            .ok_or_else(|| ApiError::bad_request(format!("Unknown client {client_id}")))
    }

    /// The `versionId` of the client whose app is `app_id`, if one is registered.
    pub fn app_version(&self, app_id: &str) -> Option<String> {
        self.clients
            .values()
            .find(|c| c.app_id() == app_id)
            .map(Client::version_id)
    }

    /// Issue an authorization code as if a person consented in `chooselocation` (API.md §7).
    pub fn issue_code(
        &mut self,
        client_id: &str,
        principal: Principal,
        company_id: String,
        scopes: Option<Vec<String>>,
        bulk: Option<BulkGrant>,
    ) -> ApiResult<String> {
        let client = self
            .clients
            .get(client_id)
            .ok_or_else(|| ApiError::bad_request(format!("Unknown client {client_id}")))?;
        // Consent can narrow the app's scopes, never widen them.
        let granted = match (scope_set(&client.spec.scopes), scope_set(&scopes)) {
            (Some(app), Some(asked)) => Some(app.intersection(&asked).cloned().collect()),
            (app, asked) => asked.or(app),
        };
        let code = uuid::Uuid::new_v4().simple().to_string();
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.to_owned(),
                principal,
                company_id,
                scopes: granted,
                bulk,
                expires_at: Instant::now() + Duration::from_secs(self.cfg.auth_code_ttl_secs),
            },
        );
        Ok(code)
    }

    fn mint(
        &mut self,
        client_id: &str,
        principal: Principal,
        company_id: String,
        scopes: Option<BTreeSet<String>>,
        bulk: Option<BulkGrant>,
        with_refresh: bool,
    ) -> (String, Option<String>) {
        let (app_id, version_id) = self
            .clients
            .get(client_id)
            .map(|c| (c.app_id(), c.version_id()))
            .unwrap_or_default();
        let access = random_token("at");
        self.access.insert(
            access.clone(),
            AccessToken {
                ctx: AuthCtx {
                    principal: principal.clone(),
                    app_key: format!("oauth:{client_id}"),
                    app_id,
                    version_id,
                    scopes: scopes.clone(),
                    client_id: Some(client_id.to_owned()),
                    company_id: company_id.clone(),
                },
                bulk: bulk.clone(),
                expires_at: Some(
                    Instant::now() + Duration::from_secs(self.cfg.access_token_ttl_secs),
                ),
            },
        );
        let refresh = with_refresh.then(|| {
            let r = random_token("rt");
            self.refresh.insert(
                r.clone(),
                RefreshToken {
                    client_id: client_id.to_owned(),
                    principal,
                    company_id,
                    scopes,
                    bulk,
                    consumed: None,
                },
            );
            r
        });
        (access, refresh)
    }

    /// A token pair for (client, principal) without the code dance (control API shortcut).
    pub fn issue_pair(
        &mut self,
        client_id: &str,
        principal: Principal,
        company_id: String,
        scopes: Option<Vec<String>>,
    ) -> ApiResult<TokenPair> {
        let code = self.issue_code(client_id, principal, company_id, scopes, None)?;
        let c = self
            .codes
            .remove(&code)
            .ok_or_else(|| ApiError::bad_request("Invalid grant: authorization code is invalid"))?;
        let (access_token, refresh) =
            self.mint(client_id, c.principal, c.company_id, c.scopes, c.bulk, true);
        Ok(TokenPair {
            access_token,
            refresh_token: refresh.unwrap_or_default(),
        })
    }

    /// The 200 body of `POST /oauth/token` ([O2] `GetAccessCodeSuccessfulResponseDto`).
    fn token_body(&self, access: &str, refresh: &str) -> Value {
        let Some(t) = self.access.get(access) else {
            return json!({});
        };
        let remaining = t
            .expires_at
            // Rounded up, so a fresh token reports the full lifetime (86399, [O2]).
            .map(|e| e.saturating_duration_since(Instant::now()).as_millis().div_ceil(1000) as u64)
            .unwrap_or(self.cfg.access_token_ttl_secs);
        let ctx = &t.ctx;
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": remaining,
            "refresh_token": refresh,
            "scope": scope_string(&ctx.scopes),
            "userType": ctx.principal.user_type(),
            "companyId": ctx.company_id,
            "userId": "sandboxUser000000001",
            "isBulkInstallation": false,
        });
        match &ctx.principal {
            Principal::Location(l) => body["locationId"] = json!(l),
            Principal::Company(_) => {
                let bulk = t.bulk.clone().unwrap_or_default();
                body["isBulkInstallation"] = json!(t.bulk.is_some());
                body["approvedLocations"] = json!(bulk.approved_locations);
                body["installToFutureLocations"] = json!(bulk.install_to_future);
                body["approveAllLocations"] = json!(bulk.approve_all);
            }
        }
        body
    }

    /// `POST /oauth/token`. `location_active` says whether a location may get tokens.
    pub fn token(
        &mut self,
        req: &TokenRequest,
        location_active: impl Fn(&str) -> bool,
    ) -> ApiResult<(Value, TokenOutcome)> {
        let mut missing = Vec::new();
        for (name, v) in [
            ("client_id", &req.client_id),
            ("client_secret", &req.client_secret),
            ("grant_type", &req.grant_type),
        ] {
            if v.as_deref().is_none_or(str::is_empty) {
                missing.push(format!("{name} should not be empty"));
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::unprocessable(missing));
        }
        // [O2]: `user_type` is one of `Company | Location` whatever the grant.
        if req
            .user_type
            .as_deref()
            .is_some_and(|ut| !matches!(ut, "Company" | "Location"))
        {
            return Err(ApiError::bad_request("Invalid parameter: user_type"));
        }
        let client_id = req.client_id.clone().unwrap_or_default();
        let secret = req.client_secret.clone().unwrap_or_default();
        let client_ok = self
            .clients
            .get(&client_id)
            .is_some_and(|c| c.spec.client_secret == secret);
        if !client_ok {
            return Err(ApiError::unauthorized(
                "Invalid client: client credentials are invalid",
            ));
        }
        match req.grant_type.as_deref() {
            Some("authorization_code") => {
                let code = req.code.clone().unwrap_or_default();
                let c = match self.codes.get(&code) {
                    Some(c) if c.client_id == client_id && c.expires_at > Instant::now() => {
                        c.clone()
                    }
                    _ => {
                        return Err(ApiError::bad_request(
                            "Invalid grant: authorization code is invalid",
                        ));
                    }
                };
                if let Some(ut) = &req.user_type
                    && ut != c.principal.user_type()
                {
                    return Err(ApiError::bad_request(format!(
                        "Invalid grant: the authorization code was not issued for user_type {ut}"
                    )));
                }
                self.codes.remove(&code);
                let (access, refresh) = self.mint(
                    &client_id,
                    c.principal,
                    c.company_id,
                    c.scopes,
                    c.bulk,
                    true,
                );
                let refresh = refresh.unwrap_or_default();
                Ok((
                    self.token_body(&access, &refresh),
                    TokenOutcome::CodeExchanged,
                ))
            }
            Some("refresh_token") => {
                let strict = self.cfg.refresh_user_type == RefreshUserType::Required;
                if strict && req.user_type.as_deref().is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request("Missing parameter: user_type"));
                }
                let token = req.refresh_token.clone().unwrap_or_default();
                let invalid = || ApiError::bad_request("Invalid grant: refresh token is invalid");
                let grace = Duration::from_secs(self.cfg.refresh_grace_secs);
                let rt = match self.refresh.get(&token) {
                    Some(rt) if rt.client_id == client_id => rt.clone(),
                    _ => return Err(invalid()),
                };
                // Refused before anything is spent: the same token works with the right type.
                if strict && req.user_type.as_deref() != Some(rt.principal.user_type()) {
                    return Err(ApiError::bad_request("Invalid parameter: user_type"));
                }
                if let Principal::Location(l) = &rt.principal
                    && !location_active(l)
                {
                    // The token is not consumed: it works again once the location is active.
                    return Err(ApiError::bad_request("Location is not active"));
                }
                if let Some(used) = &rt.consumed {
                    let replay = !grace.is_zero()
                        && used.at.elapsed() <= grace
                        && used.client_secret == secret;
                    if replay {
                        return Ok((
                            self.token_body(&used.access_token, &used.refresh_token),
                            TokenOutcome::RefreshReplayed,
                        ));
                    }
                    return Err(invalid());
                }
                let (access, refresh) = self.mint(
                    &client_id,
                    rt.principal,
                    rt.company_id,
                    rt.scopes,
                    rt.bulk,
                    true,
                );
                let refresh = refresh.unwrap_or_default();
                if let Some(old) = self.refresh.get_mut(&token) {
                    old.consumed = Some(Consumed {
                        at: Instant::now(),
                        client_secret: secret,
                        access_token: access.clone(),
                        refresh_token: refresh.clone(),
                    });
                }
                Ok((self.token_body(&access, &refresh), TokenOutcome::Refreshed))
            }
            Some(other) => Err(ApiError::bad_request(format!(
                "Unsupported grant type: {other}"
            ))),
            None => Err(ApiError::unprocessable(vec![
                "grant_type should not be empty".to_owned(),
            ])),
        }
    }

    /// `POST /oauth/locationToken`: an agency token gets a location token for one of its
    /// locations where its app is installed ([O2] `GetLocationAccessTokenSuccessfulResponseDto`).
    pub fn location_token(
        &mut self,
        agency: &AuthCtx,
        company_id: &str,
        location_id: &str,
        location_company: Option<&str>,
        installed: bool,
    ) -> ApiResult<Value> {
        let Principal::Company(own) = &agency.principal else {
            return Err(ApiError::unauthorized(
                "This route requires an agency (Company) access token",
            ));
        };
        if own != company_id {
            return Err(ApiError::bad_request(
                "The token does not have access to this company",
            ));
        }
        if location_company != Some(company_id) {
            return Err(ApiError::bad_request("Location not found"));
        }
        if !installed {
            return Err(ApiError::bad_request(
                "The app is not installed on this location",
            ));
        }
        let client_id = agency
            .client_id
            .clone()
            .ok_or_else(|| ApiError::unauthorized("Location tokens need an OAuth agency token"))?;
        let (access, _) = self.mint(
            &client_id,
            Principal::Location(location_id.to_owned()),
            company_id.to_owned(),
            agency.scopes.clone(),
            None,
            false,
        );
        Ok(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.cfg.access_token_ttl_secs,
            "scope": scope_string(&agency.scopes),
            "locationId": location_id,
            "userId": "sandboxUser000000001",
            "appId": agency.app_id,
            "versionId": agency.version_id,
        }))
    }

    /// The caller behind a bearer token; 401 when unknown or expired.
    pub fn authenticate(&self, token: &str) -> ApiResult<AuthCtx> {
        match self.access.get(token) {
            Some(t) if t.expires_at.is_none_or(|e| e > Instant::now()) => Ok(t.ctx.clone()),
            _ => Err(ApiError::invalid_token()),
        }
    }

    /// Make one access token (or all OAuth access tokens) expire now, to exercise 401 handling.
    pub fn expire(&mut self, token: Option<&str>) -> usize {
        let now = Instant::now();
        let mut n = 0;
        for (k, t) in &mut self.access {
            let hit = match token {
                Some(tok) => k == tok,
                None => t.expires_at.is_some(),
            };
            if hit {
                t.expires_at = Some(now);
                n += 1;
            }
        }
        n
    }

    /// Forget every token of a location, whatever its app, PITs included (UNINSTALL without
    /// an app id).
    pub fn revoke_location(&mut self, location_id: &str) {
        let bound = |p: &Principal| *p == Principal::Location(location_id.to_owned());
        self.access.retain(|_, t| !bound(&t.ctx.principal));
        self.refresh.retain(|_, t| !bound(&t.principal));
        self.codes.retain(|_, c| !bound(&c.principal));
    }

    /// Forget the OAuth tokens and pending codes of one app bound to any of `principals`
    /// (UNINSTALL of that app); other apps' tokens and PITs stay. Returns how many access and
    /// refresh tokens went.
    pub fn revoke_app(&mut self, app_id: &str, principals: &[Principal]) -> usize {
        let clients: BTreeSet<String> = self
            .clients
            .values()
            .filter(|c| c.app_id() == app_id)
            .map(|c| c.spec.client_id.clone())
            .collect();
        let before = self.access.len() + self.refresh.len();
        self.access.retain(|_, t| {
            !(t.ctx.client_id.is_some()
                && t.ctx.app_id == app_id
                && principals.contains(&t.ctx.principal))
        });
        self.refresh
            .retain(|_, t| !(clients.contains(&t.client_id) && principals.contains(&t.principal)));
        self.codes
            .retain(|_, c| !(clients.contains(&c.client_id) && principals.contains(&c.principal)));
        before - self.access.len() - self.refresh.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(grace: u64) -> AuthRegistry {
        let mut r = AuthRegistry::new(OAuthConfig {
            refresh_grace_secs: grace,
            ..OAuthConfig::default()
        });
        r.register_client(OAuthClientSpec::default())
            .expect("client");
        r
    }

    fn refresh_req(token: &str) -> TokenRequest {
        TokenRequest {
            client_id: Some("sandbox-client".into()),
            client_secret: Some("sandbox-secret".into()),
            grant_type: Some("refresh_token".into()),
            refresh_token: Some(token.into()),
            user_type: Some("Location".into()),
            ..TokenRequest::default()
        }
    }

    #[test]
    fn a_refresh_says_the_user_type_of_its_token_unless_that_is_optional() {
        let mut r = registry(0);
        r.set_config(OAuthConfig {
            refresh_user_type: RefreshUserType::Required,
            ..OAuthConfig::default()
        });
        let pair = r
            .issue_pair(
                "sandbox-client",
                Principal::Location("loc".into()),
                "co".into(),
                None,
            )
            .expect("pair");
        let with = |ut: Option<&str>| TokenRequest {
            user_type: ut.map(str::to_owned),
            ..refresh_req(&pair.refresh_token)
        };
        let message = |e: ApiError| e.body["message"].clone();
        for (ut, want) in [
            (None, "Missing parameter: user_type"),
            (Some("Company"), "Invalid parameter: user_type"),
            (Some("location"), "Invalid parameter: user_type"),
        ] {
            let e = r.token(&with(ut), |_| true).expect_err("refused");
            assert_eq!(
                (e.status.as_u16(), message(e)),
                (400, json!(want)),
                "{ut:?}"
            );
        }
        // Nothing was spent by the refusals.
        let (next, _) = r.token(&with(Some("Location")), |_| true).expect("refresh");
        let rt = next["refresh_token"].as_str().expect("rt").to_owned();

        r.set_config(OAuthConfig {
            refresh_user_type: RefreshUserType::Optional,
            ..OAuthConfig::default()
        });
        let unsaid = TokenRequest {
            user_type: None,
            ..refresh_req(&rt)
        };
        let (next, _) = r
            .token(&unsaid, |_| true)
            .expect("optional: the token's type");
        assert_eq!(next["userType"], "Location");
        let e = r
            .token(&with(Some("location")), |_| true)
            .expect_err("not in the enum");
        assert_eq!(e.status.as_u16(), 400);
    }

    #[test]
    fn code_exchange_then_single_use_refresh() {
        let mut r = registry(0);
        let code = r
            .issue_code(
                "sandbox-client",
                Principal::Location("loc".into()),
                "co".into(),
                None,
                None,
            )
            .expect("code");
        let req = TokenRequest {
            client_id: Some("sandbox-client".into()),
            client_secret: Some("sandbox-secret".into()),
            grant_type: Some("authorization_code".into()),
            code: Some(code.clone()),
            ..TokenRequest::default()
        };
        let (body, _) = r.token(&req, |_| true).expect("exchange");
        assert_eq!(body["userType"], "Location");
        assert_eq!(body["locationId"], "loc");
        assert!(r.token(&req, |_| true).is_err(), "a code works once");
        let first_access = body["access_token"].as_str().expect("token").to_owned();
        let rt = body["refresh_token"].as_str().expect("token").to_owned();
        let (next, outcome) = r.token(&refresh_req(&rt), |_| true).expect("refresh");
        assert_eq!(outcome, TokenOutcome::Refreshed);
        assert_ne!(next["refresh_token"], body["refresh_token"]);
        let e = r.token(&refresh_req(&rt), |_| true).expect_err("reuse");
        assert_eq!(
            e.body,
            json!({"statusCode": 400, "message": "Invalid grant: refresh token is invalid"})
        );
        assert!(
            r.authenticate(&first_access).is_ok(),
            "old access token lives on"
        );
    }

    #[test]
    fn a_bulk_grant_travels_with_the_company_token_and_its_refreshes() {
        let mut r = registry(0);
        let bulk = BulkGrant {
            approved_locations: vec!["l1".into(), "l2".into()],
            install_to_future: true,
            approve_all: false,
        };
        let code = r
            .issue_code(
                "sandbox-client",
                Principal::Company("co".into()),
                "co".into(),
                None,
                Some(bulk),
            )
            .expect("code");
        let req = TokenRequest {
            client_id: Some("sandbox-client".into()),
            client_secret: Some("sandbox-secret".into()),
            grant_type: Some("authorization_code".into()),
            code: Some(code),
            user_type: Some("Company".into()),
            ..TokenRequest::default()
        };
        let (body, _) = r.token(&req, |_| true).expect("exchange");
        assert_eq!(body["userType"], "Company");
        assert_eq!(body["isBulkInstallation"], true);
        assert_eq!(body["approvedLocations"], json!(["l1", "l2"]));
        assert_eq!(body["installToFutureLocations"], true);
        assert_eq!(body["approveAllLocations"], false);
        assert!(body.get("locationId").is_none());
        let rt = body["refresh_token"].as_str().expect("rt").to_owned();
        let company = TokenRequest {
            user_type: Some("Company".into()),
            ..refresh_req(&rt)
        };
        let (next, _) = r.token(&company, |_| true).expect("refresh");
        assert_eq!(next["isBulkInstallation"], true);
        assert_eq!(next["approvedLocations"], json!(["l1", "l2"]));
    }

    #[test]
    fn revoking_an_app_spares_other_apps_and_pits() {
        let mut r = registry(0);
        r.register_client(OAuthClientSpec {
            client_id: "other".into(),
            client_secret: "s".into(),
            ..OAuthClientSpec::default()
        })
        .expect("client");
        let loc = || Principal::Location("loc".into());
        let mine = r
            .issue_pair("sandbox-client", loc(), "co".into(), None)
            .expect("pair");
        let theirs = r
            .issue_pair("other", loc(), "co".into(), None)
            .expect("pair");
        let pit = r
            .register_pit(
                &PitSpec {
                    location_id: Some("loc".into()),
                    scopes: vec!["contacts.readonly".into()],
                    ..PitSpec::default()
                },
                |_| Some("co".into()),
            )
            .expect("pit");
        assert_eq!(r.revoke_app("app-sandbox-client", &[loc()]), 2);
        assert!(r.authenticate(&mine.access_token).is_err());
        assert!(
            r.token(&refresh_req(&mine.refresh_token), |_| true)
                .is_err()
        );
        assert!(r.authenticate(&theirs.access_token).is_ok());
        assert!(r.authenticate(&pit).is_ok());
    }

    #[test]
    fn grace_window_replays_the_same_pair() {
        let mut r = registry(30);
        let pair = r
            .issue_pair(
                "sandbox-client",
                Principal::Location("loc".into()),
                "co".into(),
                None,
            )
            .expect("pair");
        let (a, _) = r
            .token(&refresh_req(&pair.refresh_token), |_| true)
            .expect("first");
        let (b, outcome) = r
            .token(&refresh_req(&pair.refresh_token), |_| true)
            .expect("replay");
        assert_eq!(outcome, TokenOutcome::RefreshReplayed);
        assert_eq!(a["refresh_token"], b["refresh_token"]);
        assert_eq!(a["access_token"], b["access_token"]);
    }

    #[test]
    fn inactive_location_keeps_the_refresh_token() {
        let mut r = registry(0);
        let pair = r
            .issue_pair(
                "sandbox-client",
                Principal::Location("loc".into()),
                "co".into(),
                None,
            )
            .expect("pair");
        let e = r
            .token(&refresh_req(&pair.refresh_token), |_| false)
            .expect_err("inactive");
        assert_eq!(e.body["message"], "Location is not active");
        r.token(&refresh_req(&pair.refresh_token), |_| true)
            .expect("works again once active");
    }

    #[test]
    fn wrong_secret_and_expiry_are_401() {
        let mut r = registry(0);
        let mut req = refresh_req("whatever");
        req.client_secret = Some("wrong".into());
        assert_eq!(
            r.token(&req, |_| true)
                .expect_err("bad secret")
                .status
                .as_u16(),
            401
        );
        let pair = r
            .issue_pair(
                "sandbox-client",
                Principal::Location("loc".into()),
                "co".into(),
                None,
            )
            .expect("pair");
        assert!(r.authenticate(&pair.access_token).is_ok());
        assert_eq!(r.expire(Some(&pair.access_token)), 1);
        assert_eq!(
            r.authenticate(&pair.access_token)
                .expect_err("expired")
                .status
                .as_u16(),
            401
        );
    }
}
