//! The Connect page: start a GHL install (an agency's, or one tenant's location), and map
//! each location an agency install left pending to an eKyte company, with eKyte's answer for
//! the key checked before anything is saved (the same use case as `tenants map`).
//!
//! The install links point at GHL's `chooselocation` page with a signed `state`; GHL sends
//! the browser back to the ingress's `/oauth/callback`, whose page links here.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use domain::{EkyteCompanyId, EkyteTaskTypeId, LocationId, TenantId, TenantSettings};
use ports::store::AuditEntry;

use super::pages::ConnectView;
use super::{ConsoleState, Who, forbidden, html, operator, pages, store_failed, who};
use crate::admin::MapRequest;
use crate::oauth_state::InstallFor;

#[derive(Debug, Default, Deserialize)]
pub struct ConnectQuery {
    /// Only the pending locations of this GHL company.
    #[serde(default)]
    pub company: Option<String>,
}

async fn view(
    s: &ConsoleState,
    who: &Who,
    company: Option<&str>,
) -> Result<ConnectView, ports::StoreError> {
    let all = who.tenants.is_none();
    let link = |f: &InstallFor| (s.install_link)(f);
    let tenants: Vec<domain::Tenant> = s
        .tenants
        .list()
        .await?
        .into_iter()
        .filter(|t| who.may_see(&t.id))
        .collect();
    let acts = who.may_act();
    let tenant_links: Vec<_> = tenants
        .iter()
        .map(|t| {
            let l = acts
                .then(|| link(&InstallFor::Tenant(t.id.clone())))
                .flatten();
            (t.clone(), l)
        })
        .collect();
    // `None` when the Marketplace app is not configured.
    let agency = acts.then(|| link(&InstallFor::Agency)).flatten();
    let links_missing = acts && agency.is_none();
    let agency_link = agency.filter(|_| all);
    let pending = if all {
        s.agencies
            .pending_locations()
            .await?
            .into_iter()
            .filter(|p| company.is_none_or(|c| c.is_empty() || p.company_id == c))
            .collect()
    } else {
        Vec::new()
    };
    Ok(ConnectView {
        links_missing,
        agency_link,
        templates: tenants.iter().map(|t| t.id.clone()).collect(),
        tenant_links,
        pending,
        refused: None,
    })
}

pub async fn page(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<ConnectQuery>,
) -> Response {
    let who = match who(&s, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    match view(&s, &who, q.company.as_deref()).await {
        Ok(v) => html(
            StatusCode::OK,
            pages::connect(&who, &s.gate.csrf_token(&who), &v),
        ),
        Err(e) => store_failed(&e),
    }
}

/// The mapping form of one pending location.
#[derive(Debug, Default, Deserialize)]
pub struct MapForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    ekyte_company: String,
    /// Our id for the tenant; empty = `loc-<location>`.
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    /// Copy the settings of this tenant; empty = the defaults.
    #[serde(default)]
    like: String,
    #[serde(default)]
    user_email: String,
    #[serde(default)]
    task_type_id: String,
    /// Empty = the keys of a tenant already on that eKyte company.
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    mcp_token: String,
}

/// The request a form asks for, or why it cannot be one.
async fn request(s: &ConsoleState, f: &MapForm) -> Result<MapRequest, String> {
    let location = LocationId::parse(f.location.trim()).map_err(|e| format!("location: {e}"))?;
    let ekyte_company = f
        .ekyte_company
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| EkyteCompanyId::new(n).ok())
        .ok_or("the eKyte company id is a positive number (Minha Empresa's id)")?;
    let id = match f.id.trim() {
        "" => None,
        raw => Some(TenantId::parse(raw).map_err(|e| format!("tenant id: {e}"))?),
    };
    let mut settings = match f.like.trim() {
        "" => TenantSettings::default(),
        like => {
            let like = TenantId::parse(like).map_err(|e| format!("copy settings from: {e}"))?;
            let mut t = s
                .tenants
                .get(&like)
                .await
                .map_err(|e| format!("copy settings from tenant {like}: {e}"))?
                .settings;
            t.ekyte.default_location = false;
            t
        }
    };
    if !f.user_email.trim().is_empty() {
        settings.ekyte.user_email = Some(f.user_email.trim().to_owned());
    }
    if !f.task_type_id.trim().is_empty() {
        let n = f
            .task_type_id
            .trim()
            .parse::<u64>()
            .map_err(|_| "the task type id is a number".to_owned())?;
        settings.ekyte.task_type_id =
            Some(EkyteTaskTypeId::new(n).map_err(|e| format!("task type id: {e}"))?);
    }
    let secret = |v: &str| (!v.trim().is_empty()).then(|| SecretString::from(v.trim().to_owned()));
    Ok(MapRequest {
        location,
        ekyte_company,
        id,
        name: Some(f.name.trim().to_owned()).filter(|n| !n.is_empty()),
        settings,
        api_key: secret(&f.api_key),
        mcp_token: secret(&f.mcp_token),
        check: true,
    })
}

pub async fn map(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Form(f): Form<MapForm>,
) -> Response {
    let who = match operator(&s, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if who.tenants.is_some() {
        return forbidden("an account limited to some tenants cannot add tenants");
    }
    let outcome = match request(&s, &f).await {
        Ok(r) => s.mapper.map(r).await,
        Err(why) => Ok(Err(why)),
    };
    match outcome {
        Ok(Ok(tenant)) => {
            tracing::info!(tenant = %tenant.id, user = %who.user, location = %tenant.location_id, "console: location mapped");
            let entry = AuditEntry::operator(
                &tenant.id,
                s.clock.now(),
                &format!("console user {}", who.user),
                format!(
                    "mapped location {} to eKyte company {} (tenant {} made)",
                    tenant.location_id, tenant.ekyte_company_id, tenant.id
                ),
            );
            if let Err(e) = s.audit.append(&[entry]).await {
                return store_failed(&e);
            }
            Redirect::to(&format!("/console/tenants/{}", tenant.id)).into_response()
        }
        Ok(Err(why)) => match view(&s, &who, None).await {
            Ok(mut v) => {
                v.refused = Some((f.location.trim().to_owned(), why));
                html(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    pages::connect(&who, &s.gate.csrf_token(&who), &v),
                )
            }
            Err(e) => store_failed(&e),
        },
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "console: mapping a location failed");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message("The action failed", &format!("{e:#}")),
            )
        }
    }
}
