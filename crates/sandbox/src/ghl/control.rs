//! The control API under `/_control` (a prefix GHL never uses): set up locations and
//! credentials, seed data, act as a person in the GHL UI, configure faults and webhooks, read
//! counters, dump state. JSON in and out; errors use the same bodies as the GHL API.
//!
//! It is never faulted, rate-limited or counted as API traffic.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::json_body;
use super::config::{
    AgencyConfig, LocationSpec, OAuthClientSpec, OAuthConfig, PitSpec, RateLimitConfig,
    WebhookFaults, WriteFaults,
};
use super::core::{Core, CustomFieldSpec, LocationUpdate};
use super::error::{ApiError, ApiResult};
use crate::common::FaultConfig;

type Shared = Arc<Core>;

fn reply(r: ApiResult<Value>) -> Response {
    match r {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_value(json_body(body)?)
        .map_err(|e| ApiError::unprocessable(vec![e.to_string()]))
}

pub fn router(core: Shared) -> Router {
    Router::new()
        .route("/health", get(|| async { axum::Json(json!({"ok": true})) }))
        .route("/locations", get(list_locations).post(create_location))
        .route("/locations/{id}", get(get_location).patch(update_location))
        .route("/locations/{id}/dump", get(dump))
        .route("/locations/{id}/custom-fields", post(custom_fields))
        .route("/oauth/clients", post(register_client))
        .route("/oauth/codes", post(issue_code))
        .route("/oauth/bulk-codes", post(issue_bulk_code))
        .route("/companies/{companyId}/installs", get(installs))
        .route("/agency", get(get_agency).put(set_agency))
        .route("/oauth/tokens", post(issue_tokens))
        .route("/oauth/expire", post(expire_tokens))
        .route("/oauth/config", get(get_oauth_config).put(set_oauth_config))
        .route("/pits", post(register_pit))
        .route("/seed/{locationId}/contacts", post(seed_contacts))
        .route("/seed/{locationId}/businesses", post(seed_businesses))
        .route("/seed/appointments", post(seed_appointments))
        .route("/seed/contacts/{contactId}/tasks", post(seed_tasks))
        .route("/seed/contacts/{contactId}/notes", post(seed_notes))
        .route("/contacts/{contactId}", get(get_contact))
        .route("/act/{locationId}/contacts", post(act_create_contact))
        .route("/act/{locationId}/install", post(act_install))
        .route("/act/{locationId}/uninstall", post(act_uninstall))
        .route("/act/locations", post(act_create_location))
        .route(
            "/act/locations/{id}",
            axum::routing::patch(act_update_location),
        )
        .route(
            "/act/companies/{companyId}/install",
            post(act_install_company),
        )
        .route(
            "/act/companies/{companyId}/uninstall",
            post(act_uninstall_company),
        )
        .route(
            "/act/contacts/{contactId}",
            axum::routing::patch(act_update_contact).delete(act_delete_contact),
        )
        .route(
            "/act/contacts/{contactId}/tags",
            post(act_add_tags).delete(act_remove_tags),
        )
        .route("/act/contacts/{contactId}/tasks", post(act_create_task))
        .route(
            "/act/contacts/{contactId}/tasks/{taskId}",
            axum::routing::patch(act_update_task).delete(act_delete_task),
        )
        .route(
            "/act/contacts/{contactId}/tasks/{taskId}/complete",
            post(act_complete_task),
        )
        .route("/act/contacts/{contactId}/notes", post(act_create_note))
        .route(
            "/act/contacts/{contactId}/notes/{noteId}",
            axum::routing::patch(act_update_note).delete(act_delete_note),
        )
        .route("/act/appointments", post(act_create_appointment))
        .route(
            "/act/appointments/{id}",
            axum::routing::patch(act_update_appointment).delete(act_delete_appointment),
        )
        .route("/faults", get(get_faults).put(set_faults))
        .route("/write-faults", get(get_write_faults).put(set_write_faults))
        .route("/rate-limits", get(get_rate_limits).put(set_rate_limits))
        .route("/rate-limits/reset", post(reset_rate_limits))
        .route("/search-lag", put(set_search_lag))
        .route("/webhooks/target", get(get_target).put(set_target))
        .route(
            "/webhooks/faults",
            get(get_webhook_faults).put(set_webhook_faults),
        )
        .route("/webhooks/keys", get(webhook_keys))
        .route("/webhooks/log", get(webhook_log).delete(clear_webhook_log))
        .route("/webhooks/wait-drained", post(wait_drained))
        .route("/counters", get(counters))
        .route("/counters/reset", post(reset_counters))
        // Bulk seeds (10,000 contacts and more) exceed axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(core)
}

async fn list_locations(State(core): State<Shared>) -> Response {
    reply(Ok(Value::Array(core.locations())))
}

async fn create_location(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<LocationSpec>(&body).and_then(|s| core.create_location(&s)))
}

async fn get_location(State(core): State<Shared>, Path(id): Path<String>) -> Response {
    reply(core.location(&id))
}

async fn update_location(
    State(core): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    reply(parse::<LocationUpdate>(&body).and_then(|u| core.update_location(&id, &u)))
}

async fn dump(State(core): State<Shared>, Path(id): Path<String>) -> Response {
    reply(core.dump(&id))
}

async fn custom_fields(
    State(core): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    reply(
        parse::<Vec<CustomFieldSpec>>(&body)
            .and_then(|s| core.define_custom_fields(&id, &s))
            .map(Value::Array),
    )
}

async fn register_client(State(core): State<Shared>, body: Bytes) -> Response {
    reply(
        parse::<OAuthClientSpec>(&body)
            .and_then(|s| core.register_client(s))
            .map(|()| json!({"ok": true})),
    )
}

/// Who an authorization code or token pair is for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantSpec {
    client_id: String,
    location_id: Option<String>,
    company_id: Option<String>,
    scopes: Option<Vec<String>>,
}

async fn issue_code(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<GrantSpec>(&body).and_then(|g| {
        core.issue_code(
            &g.client_id,
            g.location_id.as_deref(),
            g.company_id.as_deref(),
            g.scopes,
        )
        .map(|code| json!({"code": code}))
    }))
}

/// A bulk-install consent (`POST /oauth/bulk-codes`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkSpec {
    client_id: String,
    company_id: String,
    #[serde(default)]
    approved_locations: Vec<String>,
    #[serde(default)]
    install_to_future_locations: bool,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

async fn issue_bulk_code(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<BulkSpec>(&body).and_then(|b| {
        core.issue_bulk_code(
            &b.client_id,
            &b.company_id,
            &b.approved_locations,
            b.install_to_future_locations,
            b.scopes,
        )
        .map(|code| json!({"code": code}))
    }))
}

async fn installs(State(core): State<Shared>, Path(company): Path<String>) -> Response {
    reply(Ok(core.installs_json(&company)))
}

async fn get_agency(State(core): State<Shared>) -> Response {
    reply(Ok(json!(core.agency_config())))
}

async fn set_agency(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<AgencyConfig>(&body).map(|c| {
        core.set_agency_config(c.clone());
        json!(c)
    }))
}

async fn issue_tokens(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<GrantSpec>(&body).and_then(|g| {
        core.issue_tokens(
            &g.client_id,
            g.location_id.as_deref(),
            g.company_id.as_deref(),
            g.scopes,
        )
        .map(|p| json!(p))
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExpireSpec {
    /// One token; absent = every OAuth access token.
    token: Option<String>,
}

async fn expire_tokens(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<ExpireSpec>(&body).map(|e| {
        let n = core.auth().expire(e.token.as_deref());
        json!({"expired": n})
    }))
}

async fn get_oauth_config(State(core): State<Shared>) -> Response {
    reply(Ok(json!(core.auth().config())))
}

async fn set_oauth_config(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<OAuthConfig>(&body).map(|c| {
        core.auth().set_config(c.clone());
        json!(c)
    }))
}

async fn register_pit(State(core): State<Shared>, body: Bytes) -> Response {
    reply(
        parse::<PitSpec>(&body)
            .and_then(|s| core.register_pit(&s))
            .map(|t| json!({"token": t})),
    )
}

fn ids(r: ApiResult<Vec<String>>) -> Response {
    reply(r.map(|ids| json!({"ids": ids})))
}

async fn seed_contacts(
    State(core): State<Shared>,
    Path(loc): Path<String>,
    body: Bytes,
) -> Response {
    ids(json_body(&body).and_then(|v| core.seed_contacts(&loc, &v)))
}

async fn seed_businesses(
    State(core): State<Shared>,
    Path(loc): Path<String>,
    body: Bytes,
) -> Response {
    ids(json_body(&body).and_then(|v| core.seed_businesses(&loc, &v)))
}

async fn seed_appointments(State(core): State<Shared>, body: Bytes) -> Response {
    ids(json_body(&body).and_then(|v| core.seed_appointments(&v)))
}

async fn seed_tasks(State(core): State<Shared>, Path(c): Path<String>, body: Bytes) -> Response {
    ids(json_body(&body).and_then(|v| core.seed_tasks(&c, &v)))
}

async fn seed_notes(State(core): State<Shared>, Path(c): Path<String>, body: Bytes) -> Response {
    ids(json_body(&body).and_then(|v| core.seed_notes(&c, &v)))
}

async fn get_contact(State(core): State<Shared>, Path(id): Path<String>) -> Response {
    reply(core.contact_json(&id))
}

async fn act_create_contact(
    State(core): State<Shared>,
    Path(loc): Path<String>,
    body: Bytes,
) -> Response {
    reply(json_body(&body).and_then(|v| core.act_create_contact(&loc, &v)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct AppSpec {
    app_id: Option<String>,
}

async fn act_install(State(core): State<Shared>, Path(loc): Path<String>, body: Bytes) -> Response {
    reply(
        parse::<AppSpec>(&body)
            .and_then(|a| core.act_install(&loc, a.app_id.as_deref()))
            .map(|()| json!({"ok": true})),
    )
}

async fn act_uninstall(
    State(core): State<Shared>,
    Path(loc): Path<String>,
    body: Bytes,
) -> Response {
    reply(
        parse::<AppSpec>(&body)
            .and_then(|a| core.act_uninstall(&loc, a.app_id.as_deref()))
            .map(|()| json!({"ok": true})),
    )
}

async fn act_create_location(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<LocationSpec>(&body).and_then(|s| core.act_create_location(&s)))
}

async fn act_update_location(
    State(core): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    reply(parse::<LocationUpdate>(&body).and_then(|u| core.act_update_location(&id, &u)))
}

/// `{appId, locations}` of an agency-wide install.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompanyInstallSpec {
    app_id: String,
    #[serde(default)]
    locations: Vec<String>,
}

async fn act_install_company(
    State(core): State<Shared>,
    Path(company): Path<String>,
    body: Bytes,
) -> Response {
    reply(
        parse::<CompanyInstallSpec>(&body)
            .and_then(|s| core.act_install_company(&company, &s.app_id, &s.locations))
            .map(|()| json!({"ok": true})),
    )
}

async fn act_uninstall_company(
    State(core): State<Shared>,
    Path(company): Path<String>,
    body: Bytes,
) -> Response {
    reply(
        parse::<CompanyInstallSpec>(&body)
            .and_then(|s| core.act_uninstall_company(&company, &s.app_id))
            .map(|()| json!({"ok": true})),
    )
}

async fn act_update_contact(
    State(core): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    reply(json_body(&body).and_then(|v| core.act_update_contact(&id, &v)))
}

async fn act_delete_contact(State(core): State<Shared>, Path(id): Path<String>) -> Response {
    reply(core.act_delete_contact(&id).map(|()| json!({"ok": true})))
}

#[derive(Debug, Deserialize)]
struct TagsSpec {
    tags: Vec<String>,
}

async fn act_add_tags(State(core): State<Shared>, Path(id): Path<String>, body: Bytes) -> Response {
    reply(
        parse::<TagsSpec>(&body)
            .and_then(|t| core.act_tags(&id, &t.tags, true))
            .map(|tags| json!({"tags": tags})),
    )
}

async fn act_remove_tags(
    State(core): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    reply(
        parse::<TagsSpec>(&body)
            .and_then(|t| core.act_tags(&id, &t.tags, false))
            .map(|tags| json!({"tags": tags})),
    )
}

async fn act_create_task(
    State(core): State<Shared>,
    Path(c): Path<String>,
    body: Bytes,
) -> Response {
    reply(json_body(&body).and_then(|v| core.act_create_task(&c, &v)))
}

async fn act_update_task(
    State(core): State<Shared>,
    Path((c, t)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    reply(json_body(&body).and_then(|v| core.act_update_task(&c, &t, &v)))
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct CompleteSpec {
    completed: bool,
}

impl Default for CompleteSpec {
    fn default() -> Self {
        Self { completed: true }
    }
}

async fn act_complete_task(
    State(core): State<Shared>,
    Path((c, t)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    reply(parse::<CompleteSpec>(&body).and_then(|s| core.act_complete_task(&c, &t, s.completed)))
}

async fn act_delete_task(
    State(core): State<Shared>,
    Path((c, t)): Path<(String, String)>,
) -> Response {
    reply(core.act_delete_task(&c, &t).map(|()| json!({"ok": true})))
}

async fn act_create_note(
    State(core): State<Shared>,
    Path(c): Path<String>,
    body: Bytes,
) -> Response {
    reply(json_body(&body).and_then(|v| core.act_create_note(&c, &v)))
}

async fn act_update_note(
    State(core): State<Shared>,
    Path((c, n)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    reply(json_body(&body).and_then(|v| core.act_update_note(&c, &n, &v)))
}

async fn act_delete_note(
    State(core): State<Shared>,
    Path((c, n)): Path<(String, String)>,
) -> Response {
    reply(core.act_delete_note(&c, &n).map(|()| json!({"ok": true})))
}

async fn act_create_appointment(State(core): State<Shared>, body: Bytes) -> Response {
    reply(json_body(&body).and_then(|v| core.act_create_appointment(&v)))
}

async fn act_update_appointment(
    State(core): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    reply(json_body(&body).and_then(|v| core.act_update_appointment(&id, &v)))
}

async fn act_delete_appointment(State(core): State<Shared>, Path(id): Path<String>) -> Response {
    reply(
        core.act_delete_appointment(&id)
            .map(|()| json!({"ok": true})),
    )
}

async fn get_faults(State(core): State<Shared>) -> Response {
    reply(Ok(json!(core.faults.config())))
}

async fn set_faults(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<FaultConfig>(&body).map(|c| {
        core.faults.set(c.clone());
        json!(c)
    }))
}

async fn get_write_faults(State(core): State<Shared>) -> Response {
    reply(Ok(json!(core.lost_answers.config())))
}

async fn set_write_faults(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<WriteFaults>(&body).map(|c| {
        core.lost_answers.set(c.clone());
        json!(c)
    }))
}

async fn get_rate_limits(State(core): State<Shared>) -> Response {
    reply(Ok(json!(core.limiter.config())))
}

async fn set_rate_limits(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<RateLimitConfig>(&body).map(|c| {
        core.limiter.set_config(c.clone());
        json!(c)
    }))
}

async fn reset_rate_limits(State(core): State<Shared>) -> Response {
    core.limiter.reset();
    reply(Ok(json!({"ok": true})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LagSpec {
    ms: u64,
}

async fn set_search_lag(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<LagSpec>(&body).map(|l| {
        core.set_search_lag(Duration::from_millis(l.ms));
        json!({"ms": l.ms})
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TargetSpec {
    url: Option<String>,
}

async fn get_target(State(core): State<Shared>) -> Response {
    reply(Ok(json!({"url": core.webhooks.url()})))
}

async fn set_target(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<TargetSpec>(&body).map(|t| {
        core.webhooks.set_url(t.url.clone());
        json!({"url": t.url})
    }))
}

async fn get_webhook_faults(State(core): State<Shared>) -> Response {
    reply(Ok(json!(core.webhooks.faults())))
}

async fn set_webhook_faults(State(core): State<Shared>, body: Bytes) -> Response {
    reply(parse::<WebhookFaults>(&body).map(|f| {
        core.webhooks.set_faults(f.clone());
        json!(f)
    }))
}

async fn webhook_keys(State(core): State<Shared>) -> Response {
    let keys = core.webhooks.keys();
    reply(Ok(json!({
        "ed25519": keys.ed25519_public_pem(),
        "rsa": keys.rsa_public_pem(),
    })))
}

async fn webhook_log(State(core): State<Shared>) -> Response {
    reply(Ok(Value::Array(core.webhooks.log())))
}

async fn clear_webhook_log(State(core): State<Shared>) -> Response {
    core.webhooks.clear_log();
    reply(Ok(json!({"ok": true})))
}

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WaitSpec {
    timeout_ms: u64,
}

impl Default for WaitSpec {
    fn default() -> Self {
        Self { timeout_ms: 10_000 }
    }
}

/// 200 `{drained: true}` once nothing is in flight; 408 `{drained: false, inFlight}` when the
/// timeout passes first.
async fn wait_drained(State(core): State<Shared>, body: Bytes) -> Response {
    let spec = match parse::<WaitSpec>(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if core
        .webhooks
        .drained(Duration::from_millis(spec.timeout_ms))
        .await
    {
        reply(Ok(json!({"drained": true})))
    } else {
        (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(json!({"drained": false, "inFlight": core.webhooks.in_flight()})),
        )
            .into_response()
    }
}

async fn counters(State(core): State<Shared>) -> Response {
    reply(Ok(json!(core.counters.snapshot())))
}

async fn reset_counters(State(core): State<Shared>) -> Response {
    core.counters.reset();
    reply(Ok(json!({"ok": true})))
}
