//! OAuth endpoints ([O2], API.md §7): `POST /oauth/token` and `POST /oauth/locationToken`,
//! both `application/x-www-form-urlencoded`, and `GET /oauth/installedLocations`.
//!
//! The two agency routes are `Agency-Access-Only`; the middleware has already refused
//! Location tokens and PITs, a missing scope and a wrong `Version` when a handler runs.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Shared, ok, unit_result};
use crate::ghl::auth::{AuthCtx, TokenOutcome, TokenRequest};
use crate::ghl::config::InstalledCount;
use crate::ghl::error::{ApiError, ApiResult};
use crate::ghl::util::iso;

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `POST /oauth/token`: `authorization_code` and `refresh_token` grants.
pub async fn token(State(core): State<Shared>, body: Bytes) -> Response {
    let f = form(&body);
    let get = |k: &str| f.get(k).cloned();
    let req = TokenRequest {
        client_id: get("client_id"),
        client_secret: get("client_secret"),
        grant_type: get("grant_type"),
        code: get("code"),
        refresh_token: get("refresh_token"),
        user_type: get("user_type"),
    };
    // Read location states first: the auth lock is never held while taking the store lock.
    let active: HashMap<String, bool> = core
        .store()
        .locations
        .values()
        .map(|l| (l.info.id.clone(), l.info.active))
        .collect();
    let is_refresh = req.grant_type.as_deref() == Some("refresh_token");
    let result = core
        .auth()
        .token(&req, |l| active.get(l).copied().unwrap_or(false));
    match result {
        Ok((body, outcome)) => {
            core.counters.bump(match outcome {
                TokenOutcome::CodeExchanged => "oauth_code_exchanged",
                TokenOutcome::Refreshed => "oauth_refresh",
                TokenOutcome::RefreshReplayed => "oauth_refresh_replayed",
            });
            ok(body)
        }
        Err(e) => {
            if is_refresh {
                core.counters.bump("oauth_refresh_rejected");
            }
            axum::response::IntoResponse::into_response(e)
        }
    }
}

/// `POST /oauth/locationToken` (agency token, form `companyId`, `locationId`).
pub async fn location_token(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let f = form(&body);
        let mut missing = Vec::new();
        for k in ["companyId", "locationId"] {
            if f.get(k).is_none_or(String::is_empty) {
                missing.push(format!("{k} should not be empty"));
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::unprocessable(missing));
        }
        let company = f.get("companyId").cloned().unwrap_or_default();
        let location = f.get("locationId").cloned().unwrap_or_default();
        let (location_company, installed) = {
            let store = core.store();
            (
                store
                    .locations
                    .get(&location)
                    .map(|l| l.info.company_id.clone()),
                store.installs.get(&ctx.app_id, &location).is_some(),
            )
        };
        let body = core.auth().location_token(
            &ctx,
            &company,
            &location,
            location_company.as_deref(),
            installed,
        )?;
        core.counters.bump("oauth_location_token");
        Ok(ok(body))
    })())
}

/// The query of `GET /oauth/installedLocations`, validated like a NestJS DTO: every problem
/// is reported at once in one 422.
#[derive(Debug)]
struct InstalledQuery {
    company_id: String,
    app_id: String,
    skip: usize,
    limit: usize,
    query: Option<String>,
    is_installed: Option<bool>,
    version_id: Option<String>,
    on_trial: Option<bool>,
    plan_id: Option<String>,
    location_id: Option<String>,
}

impl InstalledQuery {
    fn parse(q: &HashMap<String, String>, max_limit: u64) -> ApiResult<Self> {
        let mut errors = Vec::new();
        let text = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
        let mut required = |k: &str| {
            let v = text(k);
            if v.is_none() {
                errors.push(format!("{k} should not be empty"));
            }
            v.unwrap_or_default()
        };
        let company_id = required("companyId");
        let app_id = required("appId");
        let mut number = |k: &str, default: u64, min: u64| match q.get(k).filter(|v| !v.is_empty())
        {
            None => default,
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n >= min => n,
                Ok(_) => {
                    errors.push(format!("{k} must not be less than {min}"));
                    default
                }
                Err(_) => {
                    errors.push(format!(
                        "{k} must be a number conforming to the specified constraints"
                    ));
                    default
                }
            },
        };
        // [O2]: `skip` and `limit` are strings defaulting to "0" and "20".
        let skip = number("skip", 0, 0);
        let limit = number("limit", 20, 1).min(max_limit.max(1));
        let mut boolean = |k: &str| match q.get(k).map(String::as_str) {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                errors.push(format!("{k} must be a boolean value"));
                None
            }
        };
        let is_installed = boolean("isInstalled");
        let on_trial = boolean("onTrial");
        if !errors.is_empty() {
            return Err(ApiError::unprocessable(errors));
        }
        Ok(Self {
            company_id,
            app_id,
            skip: usize::try_from(skip).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            query: text("query").map(|s| s.to_lowercase()),
            is_installed,
            version_id: text("versionId"),
            on_trial,
            plan_id: text("planId"),
            location_id: text("locationId"),
        })
    }
}

/// `GET /oauth/installedLocations?companyId*&appId*&skip&limit&query&isInstalled&versionId&
/// onTrial&planId&locationId` ([O2] `GetInstalledLocationsSuccessfulResponseDto`) →
/// `{locations: [{_id, name, address, isInstalled, versionId?, installedAt?}], count,
/// installToFutureLocations}`, locations in creation order. The token must be a Company token
/// of `companyId` and of the app `appId`.
pub async fn installed_locations(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        let cfg = core.agency_config();
        let q = InstalledQuery::parse(&q, cfg.installed_locations_max_limit)?;
        if ctx.principal.id() != q.company_id {
            return Err(ApiError::bad_request(
                "The token does not have access to this company",
            ));
        }
        if ctx.app_id != q.app_id {
            return Err(ApiError::bad_request(
                "The token does not have access to this app",
            ));
        }
        let store = core.store();
        let all = store.company_locations(&q.company_id);
        let matching: Vec<Value> = all
            .iter()
            .map(|l| (l, store.installs.get(&q.app_id, &l.id)))
            .filter(|(l, i)| {
                let installed_ok = match q.is_installed {
                    Some(want) => i.is_some() == want,
                    None => cfg.installed_locations_lists_all || i.is_some(),
                };
                installed_ok
                    && q.query
                        .as_ref()
                        .is_none_or(|s| l.name.to_lowercase().contains(s))
                    && q.location_id.as_ref().is_none_or(|id| *id == l.id)
                    && q.version_id
                        .as_ref()
                        .is_none_or(|v| i.is_some_and(|i| i.version_id == *v))
                    && q.plan_id
                        .as_ref()
                        .is_none_or(|p| i.is_some_and(|i| i.plan_id == *p))
                    && q.on_trial
                        .is_none_or(|t| i.is_some_and(|i| i.on_trial == t))
            })
            .map(|(l, i)| {
                let mut item = Map::new();
                item.insert("_id".into(), json!(l.id));
                item.insert("name".into(), json!(l.name));
                item.insert("address".into(), json!(l.address));
                item.insert("isInstalled".into(), json!(i.is_some()));
                if let Some(i) = i {
                    item.insert("versionId".into(), json!(i.version_id));
                    item.insert("installedAt".into(), json!(iso(&i.installed_at)));
                }
                Value::Object(item)
            })
            .collect();
        let count = match cfg.installed_locations_count {
            InstalledCount::Company => all.len(),
            InstalledCount::Matching => matching.len(),
        };
        let future = store
            .installs
            .company(&q.app_id, &q.company_id)
            .is_some_and(|c| c.install_to_future);
        let page: Vec<Value> = matching.into_iter().skip(q.skip).take(q.limit).collect();
        core.counters.bump("oauth_installed_locations");
        Ok(ok(json!({
            "locations": page,
            "count": count,
            "installToFutureLocations": future,
        })))
    })())
}
