//! OAuth endpoints ([O2], API.md §7): `POST /oauth/token` and `POST /oauth/locationToken`,
//! both `application/x-www-form-urlencoded`.

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;

use super::{Shared, ok, unit_result};
use crate::ghl::auth::{AuthCtx, TokenOutcome, TokenRequest};
use crate::ghl::error::ApiError;

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
        let location_company = core
            .store()
            .locations
            .get(&location)
            .map(|l| l.info.company_id.clone());
        let body =
            core.auth()
                .location_token(&ctx, &company, &location, location_company.as_deref())?;
        core.counters.bump("oauth_location_token");
        Ok(ok(body))
    })())
}
