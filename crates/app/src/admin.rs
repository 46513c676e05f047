//! Operator actions that more than one client performs: the CLI, the demo and the test
//! suites save tenants the same way, through the ports.

use std::sync::Arc;

use anyhow::{Context, bail};
use async_trait::async_trait;
use secrecy::SecretString;

use chrono::{DateTime, Utc};
use domain::{EkyteCompanyId, LocationId, Tenant, TenantId, TenantSettings};
use ports::store::{
    Credential, CredentialSecret, CredentialStore, DuePredicate, NewCredential, Provider,
    RefreshError, Refresher, TenantStore,
};
use ports::{Priority, Scope, StoreError};

/// What a location's tenant is made from when an agency install maps it to eKyte: the eKyte
/// company, the settings and the eKyte keys (`tenants map`, or a rule of `ghl.agency_rules`).
pub struct Blueprint {
    pub ekyte_company: EkyteCompanyId,
    pub settings: TenantSettings,
    pub api_key: SecretString,
    pub mcp_token: Option<SecretString>,
}

impl Blueprint {
    /// Like tenant `like`: its eKyte company, settings (without being the company's default
    /// location) and eKyte keys.
    pub async fn like(
        tenants: &dyn TenantStore,
        credentials: &dyn CredentialStore,
        like: &TenantId,
    ) -> anyhow::Result<Self> {
        let template = tenants
            .get(like)
            .await
            .with_context(|| format!("the mapping's tenant {like}"))?;
        let (api_key, mcp_token) = ekyte_keys(credentials, like).await?;
        let mut settings = template.settings;
        settings.ekyte.default_location = false;
        Ok(Self {
            ekyte_company: template.ekyte_company_id,
            settings,
            api_key,
            mcp_token,
        })
    }

    /// The eKyte keys of a tenant already on eKyte company `company` (several locations
    /// sharing one eKyte company share its keys).
    pub async fn company_keys(
        tenants: &dyn TenantStore,
        credentials: &dyn CredentialStore,
        company: EkyteCompanyId,
    ) -> anyhow::Result<(SecretString, Option<SecretString>)> {
        for t in tenants.list().await.context("reading the tenants")? {
            if t.ekyte_company_id == company
                && let Ok(keys) = ekyte_keys(credentials, &t.id).await
            {
                return Ok(keys);
            }
        }
        bail!(
            "no eKyte API key for eKyte company {company}: give one (--ekyte-api-key, or ekyte_api_key in the rule); no tenant on that company has one to share"
        )
    }

    /// The tenant of `location` (of GHL company `company`, installed agency-wide at
    /// `installed_at`), active.
    pub fn tenant(
        &self,
        id: TenantId,
        location: &LocationId,
        name: Option<&str>,
        company: &str,
        installed_at: DateTime<Utc>,
    ) -> Tenant {
        Tenant {
            id,
            name: name.unwrap_or(location.as_str()).to_owned(),
            location_id: location.clone(),
            ekyte_company_id: self.ekyte_company,
            active: true,
            settings: self.settings.clone(),
            install: domain::Install {
                kind: domain::InstallKind::Agency,
                company_id: Some(company.to_owned()),
                installed_at: Some(installed_at),
                changed_at: None,
                timezone: None,
            },
        }
    }
}

async fn ekyte_keys(
    credentials: &dyn CredentialStore,
    tenant: &TenantId,
) -> anyhow::Result<(SecretString, Option<SecretString>)> {
    let c = credentials
        .get(tenant, Provider::Ekyte)
        .await
        .with_context(|| format!("the eKyte credentials of tenant {tenant}"))?;
    match c.secret {
        CredentialSecret::Ekyte { api_key, mcp_token } => Ok((api_key, mcp_token)),
        _ => bail!("the eKyte credentials of tenant {tenant} are not eKyte keys"),
    }
}

/// The id of the tenant an agency mapping makes for `location`: `loc-` and the location's id
/// in lower case. Refused when that id already stands for another location.
pub async fn agency_tenant_id(
    tenants: &dyn TenantStore,
    location: &LocationId,
) -> anyhow::Result<TenantId> {
    let id = TenantId::parse(format!("loc-{}", location.as_str().to_ascii_lowercase()))
        .with_context(|| format!("a tenant id for location {location}"))?;
    if let Ok(existing) = tenants.get(&id).await
        && &existing.location_id != location
    {
        bail!(
            "tenant {id} already stands for location {}",
            existing.location_id
        );
    }
    Ok(id)
}

/// The tenant's settings are valid and hold what every sync needs; the error names what is
/// missing.
fn usable_settings(tenant: &Tenant) -> anyhow::Result<()> {
    tenant.settings.validate().context("tenant settings")?;
    let missing = tenant.settings.missing();
    if !missing.is_empty() {
        bail!(
            "tenant {} is missing settings it cannot sync without: {}",
            tenant.id,
            missing.join(", ")
        );
    }
    Ok(())
}

/// Whether a tenant can work, before it is stored: the settings every sync needs, and (with
/// `ekyte`) eKyte's answer for the key, the user email and the task type ([`check_ekyte`]).
/// The error says what is missing.
pub async fn check_tenant(
    ekyte: Option<ekyte::EkyteConfig>,
    stored: Arc<dyn CredentialStore>,
    tenant: &Tenant,
    api_key: Option<&SecretString>,
    mcp_token: Option<&SecretString>,
) -> anyhow::Result<()> {
    usable_settings(tenant)?;
    match ekyte {
        Some(config) => check_ekyte(config, stored, tenant, api_key, mcp_token).await,
        None => Ok(()),
    }
}

/// Ask eKyte whether the tenant can work: the API key answers the auth test for the
/// tenant's company, the user email is a member, the task type exists and is active. With
/// `api_key`, that key is checked (nothing is stored first); without, the stored one.
pub async fn check_ekyte(
    config: ekyte::EkyteConfig,
    stored: Arc<dyn CredentialStore>,
    tenant: &Tenant,
    api_key: Option<&SecretString>,
    mcp_token: Option<&SecretString>,
) -> anyhow::Result<()> {
    let credentials: Arc<dyn CredentialStore> = match api_key {
        Some(key) => Arc::new(Candidate(Credential {
            tenant: tenant.id.clone(),
            provider: Provider::Ekyte,
            secret: CredentialSecret::Ekyte {
                api_key: key.clone(),
                mcp_token: mcp_token.cloned(),
            },
            expires_at: None,
            version: 0,
            updated_at: chrono::Utc::now(),
        })),
        None => stored,
    };
    let adapter = ekyte::EkyteAdapter::new(config, credentials).context("eKyte configuration")?;
    let scope = Scope::new(Arc::new(tenant.clone()), Priority::RealTime);
    let health = adapter
        .healthcheck(&scope)
        .await
        .context("the eKyte check failed (is the API key right, and eKyte reachable?)")?;
    if !health.problems.is_empty() {
        bail!(
            "tenant {} cannot work with eKyte: {}",
            tenant.id,
            health.problems.join("; ")
        );
    }
    Ok(())
}

/// The credential being checked, before anything is stored.
struct Candidate(Credential);

#[async_trait]
impl CredentialStore for Candidate {
    async fn all(
        &self,
        provider: Provider,
    ) -> Result<Vec<(TenantId, ports::store::CredentialRead)>, StoreError> {
        Ok(if provider == self.0.provider {
            vec![(self.0.tenant.clone(), Ok(self.0.clone()))]
        } else {
            Vec::new()
        })
    }

    async fn get(&self, tenant: &TenantId, provider: Provider) -> Result<Credential, StoreError> {
        if tenant == &self.0.tenant && provider == self.0.provider {
            Ok(self.0.clone())
        } else {
            Err(StoreError::NotFound {
                what: format!("{provider:?} credential of {tenant}"),
            })
        }
    }

    async fn put(
        &self,
        _tenant: &TenantId,
        _provider: Provider,
        _credential: &NewCredential,
    ) -> Result<Credential, StoreError> {
        Err(StoreError::Unknown(anyhow::anyhow!(
            "a credential under check is not stored"
        )))
    }

    async fn delete(&self, _tenant: &TenantId, _provider: Provider) -> Result<(), StoreError> {
        Ok(())
    }

    async fn with_credential_lock(
        &self,
        tenant: &TenantId,
        provider: Provider,
        _due: DuePredicate,
        _refresh: Refresher,
    ) -> Result<Credential, RefreshError> {
        Ok(self.get(tenant, provider).await?)
    }
}

/// Save a tenant and its credentials (encrypted by the store).
pub async fn add_tenant(
    tenants: &dyn TenantStore,
    credentials: &dyn CredentialStore,
    tenant: &Tenant,
    ekyte_api_key: Option<SecretString>,
    ekyte_mcp_token: Option<SecretString>,
    ghl_private_token: Option<SecretString>,
) -> anyhow::Result<()> {
    usable_settings(tenant)?;
    // A new tenant is installed now: onboarding is for the contacts added from here on.
    let mut tenant = tenant.clone();
    tenant
        .install
        .installed_at
        .get_or_insert_with(chrono::Utc::now);
    let tenant = &tenant;
    tenants.upsert(tenant).await.context("saving the tenant")?;
    if let Some(api_key) = ekyte_api_key {
        credentials
            .put(
                &tenant.id,
                Provider::Ekyte,
                &NewCredential {
                    secret: CredentialSecret::Ekyte {
                        api_key,
                        mcp_token: ekyte_mcp_token,
                    },
                    expires_at: None,
                },
            )
            .await
            .context("saving the eKyte credentials")?;
    } else if ekyte_mcp_token.is_some() {
        bail!("an eKyte MCP token needs the company API key too (--ekyte-api-key)");
    }
    if let Some(token) = ghl_private_token {
        credentials
            .put(
                &tenant.id,
                Provider::Ghl,
                &NewCredential {
                    secret: CredentialSecret::GhlPrivate { token },
                    expires_at: None,
                },
            )
            .await
            .context("saving the GHL token")?;
    }
    Ok(())
}

/// Publish dead letter `id` again with its attempt reset, and mark it replayed. `Ok(false)`
/// when it was replayed already (nothing is published twice).
pub async fn replay_one(
    store: &dyn ports::store::DeadLetterStore,
    publisher: &dyn ports::queue::Publisher,
    id: i64,
) -> anyhow::Result<bool> {
    let d = store
        .get(id)
        .await
        .with_context(|| format!("dead letter {id}"))?;
    if d.replayed_at.is_some() {
        return Ok(false);
    }
    let env = ports::queue::Envelope::from_json(d.letter.envelope.as_bytes()).with_context(|| {
        format!("dead letter {id} does not hold a message that can be replayed (its body is not an envelope)")
    })?;
    let env = ports::queue::Envelope { attempt: 0, ..env };
    publisher
        .publish(&env)
        .await
        .with_context(|| format!("publishing dead letter {id}"))?;
    store.mark_replayed(id).await?;
    Ok(true)
}

/// What an operator asks when they map a pending location (`tenants map`, the console's
/// Connect page).
pub struct MapRequest {
    pub location: LocationId,
    pub ekyte_company: EkyteCompanyId,
    /// Default: [`agency_tenant_id`].
    pub id: Option<TenantId>,
    /// Default: the location's name in GHL.
    pub name: Option<String>,
    pub settings: TenantSettings,
    /// Without one: the keys of a tenant already on that eKyte company.
    pub api_key: Option<SecretString>,
    pub mcp_token: Option<SecretString>,
    /// Ask eKyte whether the key, the user email and the task type work before saving.
    pub check: bool,
}

/// Maps pending locations of agency installs to eKyte companies, making their tenants.
pub struct Mapper {
    pub tenants: Arc<dyn TenantStore>,
    pub credentials: Arc<dyn CredentialStore>,
    pub agencies: Arc<dyn ports::store::AgencyStore>,
    pub ekyte: ekyte::EkyteConfig,
}

impl Mapper {
    /// The new tenant, saved and using the agency's install at once; or, as `Ok(Err(why))`,
    /// why the request is refused (nothing is stored then). `Err` when the store fails.
    pub async fn map(&self, r: MapRequest) -> anyhow::Result<Result<Tenant, String>> {
        let pending = self
            .agencies
            .pending_locations()
            .await?
            .into_iter()
            .find(|p| p.location_id == r.location);
        let Some(pending) = pending else {
            let why = match self.tenants.by_location(&r.location).await? {
                Some(t) => format!("it is tenant {} already", t.id),
                None => "no agency install approved it (`tenants list` shows the pending locations; a location of a single-location install is added with `tenants add`)".to_owned(),
            };
            return Ok(Err(format!(
                "location {} is not pending: {why}",
                r.location
            )));
        };
        let (api_key, mcp_token) = match r.api_key {
            Some(key) => (key, r.mcp_token),
            None => match Blueprint::company_keys(
                self.tenants.as_ref(),
                self.credentials.as_ref(),
                r.ekyte_company,
            )
            .await
            {
                Ok(keys) => keys,
                Err(e) => return Ok(Err(format!("{e:#}"))),
            },
        };
        let id = match r.id {
            Some(id) => id,
            None => match agency_tenant_id(self.tenants.as_ref(), &r.location).await {
                Ok(id) => id,
                Err(e) => return Ok(Err(format!("{e:#}"))),
            },
        };
        if let Ok(existing) = self.tenants.get(&id).await {
            return Ok(Err(format!(
                "tenant {id} exists already (location {}): choose another id",
                existing.location_id
            )));
        }
        let blueprint = Blueprint {
            ekyte_company: r.ekyte_company,
            settings: r.settings,
            api_key,
            mcp_token,
        };
        let mut tenant = blueprint.tenant(
            id,
            &r.location,
            pending.name.as_deref(),
            &pending.company_id,
            pending.since,
        );
        if let Some(name) = r.name.filter(|n| !n.trim().is_empty()) {
            tenant.name = name;
        }
        let ekyte = r.check.then(|| self.ekyte.clone());
        if let Err(e) = check_tenant(
            ekyte,
            self.credentials.clone(),
            &tenant,
            Some(&blueprint.api_key),
            blueprint.mcp_token.as_ref(),
        )
        .await
        {
            return Ok(Err(format!("{e:#}")));
        }
        add_tenant(
            self.tenants.as_ref(),
            self.credentials.as_ref(),
            &tenant,
            Some(blueprint.api_key),
            blueprint.mcp_token,
            None,
        )
        .await?;
        self.agencies.take_pending(&r.location).await?;
        Ok(Ok(tenant))
    }
}

/// Replay every dead letter of `tenant` not replayed yet that `pick` chooses (a group of one
/// error class, or all since a time); returns how many were replayed. Stops at the first
/// failure, saying how many went before it.
pub async fn replay_matching(
    store: &dyn ports::store::DeadLetterStore,
    publisher: &dyn ports::queue::Publisher,
    tenant: &TenantId,
    pick: impl Fn(&ports::store::DeadLetter) -> bool,
) -> anyhow::Result<usize> {
    const PAGE: u32 = 500;
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(Some(tenant.clone()), false, before, PAGE)
            .await
            .context("reading the dead letters")?;
        before = page.last().map(|d| d.id);
        ids.extend(page.iter().filter(|d| pick(d)).map(|d| d.id));
        if page.len() < PAGE as usize {
            break;
        }
    }
    let mut n = 0;
    for id in ids {
        match replay_one(store, publisher, id).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => return Err(e.context(format!("{n} dead letter(s) were replayed before"))),
        }
    }
    Ok(n)
}
