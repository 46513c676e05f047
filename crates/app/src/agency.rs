//! Agency-wide installs: where each location an agency approves goes.
//!
//! A location with a tenant is connected (its GHL calls use location tokens minted from the
//! company token) and re-activated. A location without one gets it from the company's
//! mapping rule (`ghl.agency_rules`), checked first like `tenants add` checks a tenant; a
//! location with no rule, or whose tenant would fail the checks, is *pending*: recorded with
//! the reason, shown by `tenants list`, until `tenants map` gives it an eKyte company.
//!
//! The OAuth callback, the company-wide INSTALL webhook and LocationCreate all place
//! locations through [`Agencies`], so the three agree.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use domain::{LifecycleChange, LocationId, Tenant, TenantId};
use ghl::{GhlAdapter, InstalledLocation, OAuthClient};
use ports::ApiError;
use ports::store::{AgencyStore, CredentialStore, PendingLocation, Provider, TenantStore};

use crate::admin::{self, Blueprint};
use crate::config::AgencyRule;

/// What placing the locations of an agency install needs.
#[derive(Clone)]
pub struct Agencies {
    pub tenants: Arc<dyn TenantStore>,
    pub credentials: Arc<dyn CredentialStore>,
    pub agencies: Arc<dyn AgencyStore>,
    pub oauth: Arc<OAuthClient>,
    /// The marketplace app's id (`ghl.app_id`), which GHL's installed-locations list needs.
    pub app_id: String,
    pub rules: Vec<AgencyRule>,
    /// Where a tenant a rule makes is checked; `None` checks its settings only.
    pub ekyte: Option<ekyte::EkyteConfig>,
    /// Drops cached GHL tokens after an install.
    pub ghl: Option<GhlAdapter>,
    /// How long before expiry the company token is refreshed.
    pub token_margin: std::time::Duration,
}

/// Where one location went.
#[derive(Debug)]
pub enum Placed {
    /// Its tenant is connected to the agency install and active.
    Connected(Tenant),
    /// Its tenant saw a newer install or uninstall: this (replayed or late) install changes
    /// nothing.
    Stale(Tenant),
    /// No tenant: waiting for `tenants map`, for the reason given.
    Pending(PendingLocation),
}

/// What an install did to its locations.
#[derive(Debug, Default)]
pub struct Placement {
    pub connected: Vec<Tenant>,
    pub stale: Vec<Tenant>,
    pub pending: Vec<PendingLocation>,
}

impl Placement {
    /// The operator's summary (the callback page, the webhook's answer).
    pub fn describe(&self, company: &str) -> String {
        let mut text = format!(
            "Installed for GHL company {company}: {} location(s) connected{}.",
            self.connected.len(),
            if self.connected.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    self.connected
                        .iter()
                        .map(|t| format!("{} ({})", t.id, t.location_id))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        if !self.pending.is_empty() {
            text.push_str(&format!(
                "\n{} location(s) are pending, with no eKyte company yet: {}. Map each with `ghl-ekyte-sync tenants map --location <id> --ekyte-company <id> --settings <file>` (`tenants list` shows them); it uses this install at once.",
                self.pending.len(),
                self.pending
                    .iter()
                    .map(|p| format!(
                        "{} ({}): {}",
                        p.location_id,
                        p.name.as_deref().unwrap_or("unnamed"),
                        p.reason
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        text
    }
}

impl Agencies {
    fn rule_for(&self, company: &str) -> Option<&AgencyRule> {
        self.rules.iter().find(|r| r.company == company)
    }

    /// The locations the agency's install covers now (`GET /oauth/installedLocations` with
    /// the company token, refreshed first when it is about to expire).
    pub async fn installed(&self, company: &str) -> Result<Vec<InstalledLocation>, ApiError> {
        let token = self
            .oauth
            .company_access(self.agencies.as_ref(), company, self.token_margin)
            .await?;
        self.oauth
            .installed_locations(&token, company, &self.app_id)
            .await
    }

    /// Place every location of an install of GHL time `at`. A store failure stops it (the
    /// caller answers so that GHL, or the operator, tries again; placing is idempotent).
    pub async fn place_all(
        &self,
        company: &str,
        locations: &[InstalledLocation],
        at: DateTime<Utc>,
    ) -> anyhow::Result<Placement> {
        let mut out = Placement::default();
        // One rule, one blueprint and one check for all the locations it maps.
        let mut blueprint: Option<Result<Arc<Blueprint>, String>> = None;
        for l in locations {
            match self
                .place(
                    company,
                    &l.location_id,
                    l.name.as_deref(),
                    at,
                    &mut blueprint,
                )
                .await?
            {
                Placed::Connected(t) => out.connected.push(t),
                Placed::Stale(t) => out.stale.push(t),
                Placed::Pending(p) => out.pending.push(p),
            }
        }
        tracing::info!(
            %company,
            connected = out.connected.len(),
            stale = out.stale.len(),
            pending = out.pending.len(),
            "agency install placed its locations"
        );
        Ok(out)
    }

    /// Place one location (a LocationCreate, a location-form INSTALL of an agency install).
    pub async fn place_one(
        &self,
        company: &str,
        location: &LocationId,
        name: Option<&str>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Placed> {
        self.place(company, location, name, at, &mut None).await
    }

    async fn place(
        &self,
        company: &str,
        location: &LocationId,
        name: Option<&str>,
        at: DateTime<Utc>,
        blueprint: &mut Option<Result<Arc<Blueprint>, String>>,
    ) -> anyhow::Result<Placed> {
        if let Some(tenant) = self.tenants.by_location(location).await? {
            return self.connect(tenant, company, at).await;
        }
        let made = match self.rule_for(company) {
            None => Err(format!(
                "no mapping rule for GHL company {company} (ghl.agency_rules)"
            )),
            Some(rule) => {
                if blueprint.is_none() {
                    *blueprint = Some(self.blueprint(rule).await.map(Arc::new));
                }
                match blueprint.as_ref().expect("just set") {
                    Err(reason) => Err(reason.clone()),
                    Ok(b) => self.make(b, company, location, name, at).await?,
                }
            }
        };
        match made {
            Ok(tenant) => Ok(Placed::Connected(tenant)),
            Err(reason) => {
                let pending = PendingLocation {
                    location_id: location.clone(),
                    company_id: company.to_owned(),
                    name: name.map(str::to_owned),
                    since: at,
                    reason,
                };
                tracing::warn!(%company, %location, reason = %pending.reason, "location pending: it syncs once it is mapped to an eKyte company (`tenants map`)");
                self.agencies.put_pending(&pending).await?;
                // Its first `since` stays: read it back.
                let stored = self
                    .agencies
                    .pending_locations()
                    .await?
                    .into_iter()
                    .find(|p| &p.location_id == location)
                    .unwrap_or(pending);
                Ok(Placed::Pending(stored))
            }
        }
    }

    /// A known tenant joins the agency install: install kind agency, its own GHL token (if
    /// any) superseded by the company's, and active, unless it saw a newer lifecycle event.
    async fn connect(
        &self,
        tenant: Tenant,
        company: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Placed> {
        if tenant.install.judge(at) == LifecycleChange::Stale {
            return Ok(Placed::Stale(tenant));
        }
        let mut updated = tenant.clone();
        updated.install.kind = domain::InstallKind::Agency;
        updated.install.company_id = Some(company.to_owned());
        self.tenants.upsert(&updated).await?;
        self.credentials.delete(&tenant.id, Provider::Ghl).await?;
        if !self.tenants.apply_lifecycle(&tenant.id, true, at).await? {
            return Ok(Placed::Stale(tenant));
        }
        self.forget(&tenant.id);
        Ok(Placed::Connected(self.tenants.get(&tenant.id).await?))
    }

    /// What the rule makes tenants from; `Err` is the reason its locations stay pending.
    async fn blueprint(&self, rule: &AgencyRule) -> Result<Blueprint, String> {
        let (tenants, credentials) = (self.tenants.as_ref(), self.credentials.as_ref());
        let made = match (&rule.like, rule.ekyte_company) {
            (Some(like), _) => match TenantId::parse(like) {
                Ok(like) => Blueprint::like(tenants, credentials, &like).await,
                Err(e) => Err(anyhow::anyhow!("ghl.agency_rules: like = {like:?}: {e}")),
            },
            (None, Some(id)) => {
                async {
                    let company = domain::EkyteCompanyId::new(id)?;
                    let (api_key, mcp_token) = match &rule.ekyte_api_key {
                        Some(key) => (key.clone(), rule.ekyte_mcp_token.clone()),
                        None => Blueprint::company_keys(tenants, credentials, company).await?,
                    };
                    Ok(Blueprint {
                        ekyte_company: company,
                        settings: rule.settings.clone().unwrap_or_default(),
                        api_key,
                        mcp_token,
                    })
                }
                .await
            }
            (None, None) => Err(anyhow::anyhow!(
                "ghl.agency_rules: the rule names neither `like` nor `ekyte_company`"
            )),
        };
        made.map_err(|e| format!("the mapping rule cannot make a tenant: {e:#}"))
    }

    /// The tenant `blueprint` makes for the location, checked, stored and active; `Ok(Err)`
    /// when the checks refuse it (the location stays pending).
    async fn make(
        &self,
        blueprint: &Blueprint,
        company: &str,
        location: &LocationId,
        name: Option<&str>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Result<Tenant, String>> {
        let id = match admin::agency_tenant_id(self.tenants.as_ref(), location).await {
            Ok(id) => id,
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        let tenant = blueprint.tenant(id, location, name, company, at);
        if let Err(e) = admin::check_tenant(
            self.ekyte.clone(),
            self.credentials.clone(),
            &tenant,
            Some(&blueprint.api_key),
            blueprint.mcp_token.as_ref(),
        )
        .await
        {
            return Ok(Err(format!("the mapped tenant failed its checks: {e:#}")));
        }
        admin::add_tenant(
            self.tenants.as_ref(),
            self.credentials.as_ref(),
            &tenant,
            Some(blueprint.api_key.clone()),
            blueprint.mcp_token.clone(),
            None,
        )
        .await?;
        self.tenants.apply_lifecycle(&tenant.id, true, at).await?;
        self.agencies.take_pending(location).await?;
        self.forget(&tenant.id);
        tracing::info!(tenant = %tenant.id, %location, %company, "a tenant was made for a location of the agency install");
        Ok(Ok(self.tenants.get(&tenant.id).await?))
    }

    fn forget(&self, tenant: &TenantId) {
        if let Some(g) = &self.ghl {
            g.forget_credentials(tenant);
        }
    }
}
