//! The GHL API v2 surface: routes, and the middleware every API request passes.
//!
//! The middleware, in order: bearer-token authentication (401 `UnauthorizedDTO`); admission by
//! the rate limit of (app, location) on arrival (429, counted `rate_limited_earned`); then the
//! injected faults — latency, an injected 429 (`rate_limited_injected`, consumes no budget), a
//! 5xx (`fault_server_error`) or a hang then 504 (`fault_timeout`) — none of which reaches a
//! handler, so a faulted request changes nothing; then, on `Agency-Access-Only` routes, the
//! token class (401 unless an OAuth Company token); then the route's scope (403), the
//! `Version` header (400) and query parameters the route's spec does not declare (422); then
//! the handler. A body whose `Content-Type` GHL's framework would not parse reaches the
//! handler empty (see `body_as_parsed`). Every answer to an authenticated request carries
//! the five `X-RateLimit-*` headers; every answer is counted under the matched route template
//! and its status.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use super::auth::AuthCtx;
use super::core::Core;
use super::error::{ApiError, ApiResult};
use super::ratelimit::Verdict;
use crate::common::{FaultOutcome, RouteKey};

mod businesses;
mod contacts;
mod oauth;
mod related;

/// The `Version` of Contacts, Businesses, Locations and OAuth location tokens (API.md §1).
pub const VERSION_2021_07_28: &str = "2021-07-28";
/// The `Version` of Calendars (API.md §1, [CAL2]).
pub const VERSION_2021_04_15: &str = "2021-04-15";

pub type Shared = Arc<Core>;

/// What a route demands of its caller ([C2]/[B2]/[CAL2]/[LOC2]/[O2] `security` and the
/// `Version` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RouteSpec {
    /// `false` for `POST /oauth/token`, which authenticates by client credentials.
    bearer: bool,
    /// `Agency-Access-Only` ([O2]): "the Access Token generated with user type as Agency" —
    /// neither a Location token nor a PIT.
    agency_only: bool,
    scope: Option<&'static str>,
    version: Option<&'static str>,
}

fn route_spec(method: &str, route: &str) -> RouteSpec {
    let read = method == "GET";
    let (scope, version) = if route == "/oauth/token" {
        return RouteSpec {
            bearer: false,
            agency_only: false,
            scope: None,
            version: None,
        };
    } else if route == "/oauth/locationToken" {
        ("oauth.write", VERSION_2021_07_28)
    } else if route == "/oauth/installedLocations" {
        ("oauth.readonly", VERSION_2021_07_28)
    } else if route == "/calendars/" {
        ("calendars.readonly", VERSION_2021_04_15)
    } else if route.starts_with("/calendars/") {
        ("calendars/events.readonly", VERSION_2021_04_15)
    } else if route.starts_with("/businesses") {
        (
            if read {
                "businesses.readonly"
            } else {
                "businesses.write"
            },
            VERSION_2021_07_28,
        )
    } else if route.ends_with("/tasks/search") && route.starts_with("/locations/") {
        ("locations/tasks.readonly", VERSION_2021_07_28)
    } else if route.ends_with("/customFields") {
        ("locations/customFields.readonly", VERSION_2021_07_28)
    } else if route == "/locations/{locationId}" {
        ("locations.readonly", VERSION_2021_07_28)
    } else if read || route == "/contacts/search" {
        ("contacts.readonly", VERSION_2021_07_28)
    } else {
        ("contacts.write", VERSION_2021_07_28)
    };
    RouteSpec {
        bearer: true,
        agency_only: route.starts_with("/oauth/"),
        scope: Some(scope),
        version: Some(version),
    }
}

/// GHL (Express) accepts `/contacts` for `/contacts/`; count both under the documented path.
fn canonical_route(route: &str) -> String {
    match route {
        "/contacts" | "/businesses" => format!("{route}/"),
        other => other.to_owned(),
    }
}

/// The API router, with the middleware applied to every route.
pub fn router(core: Shared) -> Router {
    Router::new()
        .route("/contacts/", get(contacts::list).post(contacts::create))
        .route("/contacts", get(contacts::list).post(contacts::create))
        .route("/contacts/upsert", post(contacts::upsert))
        .route("/contacts/search", post(contacts::search))
        .route("/contacts/search/duplicate", get(contacts::duplicate))
        .route(
            "/contacts/business/{businessId}",
            get(contacts::by_business),
        )
        .route(
            "/contacts/{contactId}",
            get(contacts::get_one)
                .put(contacts::update)
                .delete(contacts::delete),
        )
        .route(
            "/contacts/{contactId}/tags",
            post(contacts::add_tags).delete(contacts::remove_tags),
        )
        .route(
            "/contacts/{contactId}/tasks",
            get(related::list_tasks).post(related::create_task),
        )
        .route(
            "/contacts/{contactId}/tasks/{taskId}",
            get(related::get_task)
                .put(related::update_task)
                .delete(related::delete_task),
        )
        .route(
            "/contacts/{contactId}/tasks/{taskId}/completed",
            put(related::complete_task),
        )
        .route(
            "/contacts/{contactId}/notes",
            get(related::list_notes).post(related::create_note),
        )
        .route(
            "/contacts/{contactId}/notes/{id}",
            get(related::get_note)
                .put(related::update_note)
                .delete(related::delete_note),
        )
        .route(
            "/contacts/{contactId}/appointments",
            get(related::contact_appointments),
        )
        .route(
            "/calendars/events/appointments/{eventId}",
            get(related::get_appointment),
        )
        .route("/calendars/", get(related::list_calendars))
        .route("/calendars/events", get(related::calendar_events))
        .route(
            "/locations/{locationId}/tasks/search",
            post(related::search_location_tasks),
        )
        .route(
            "/locations/{locationId}/customFields",
            get(related::custom_fields),
        )
        .route("/locations/{locationId}", get(related::get_location))
        .route(
            "/businesses/",
            get(businesses::list).post(businesses::create),
        )
        .route(
            "/businesses",
            get(businesses::list).post(businesses::create),
        )
        .route(
            "/businesses/{businessId}",
            get(businesses::get_one)
                .put(businesses::update)
                .delete(businesses::delete),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/locationToken", post(oauth::location_token))
        .route("/oauth/installedLocations", get(oauth::installed_locations))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            api_layer,
        ))
        .with_state(core)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn record(core: &Core, key: RouteKey, resp: Response) -> Response {
    core.counters.record(key, resp.status().as_u16());
    resp
}

async fn api_layer(State(core): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| canonical_route(m.as_str()))
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let key = RouteKey::new(method.clone(), route.clone());
    let spec = route_spec(&method, &route);
    let mut req = body_as_parsed(req, &route);
    let decision = core.faults.decide(&key);

    // Admission happens on arrival, before any injected slowness: GHL's limiter sits in front
    // of its backend, so backend latency must not bunch requests up inside the window.
    let admitted = if spec.bearer {
        let ctx = match bearer(req.headers()).map(|t| core.auth().authenticate(t)) {
            Some(Ok(ctx)) => ctx,
            Some(Err(e)) => return record(&core, key, e.into_response()),
            None => return record(&core, key, ApiError::invalid_token().into_response()),
        };
        let resource = ctx.principal.id().to_owned();
        if decision.outcome == FaultOutcome::RateLimited {
            // An injected 429 consumes nothing: the caller did not exceed anything.
            let h = core.limiter.peek(&ctx.app_key, &resource);
            Some((ctx, h))
        } else {
            let (verdict, h) = core.limiter.check(&ctx.app_key, &resource);
            if verdict != Verdict::Admitted {
                core.counters.bump("rate_limited_earned");
                let mut resp = ApiError::too_many_requests().into_response();
                h.apply(resp.headers_mut());
                return record(&core, key, resp);
            }
            Some((ctx, h))
        }
    } else {
        None
    };
    let with_headers = |mut resp: Response| {
        if let Some((_, h)) = &admitted {
            h.apply(resp.headers_mut());
        }
        resp
    };

    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    match decision.outcome {
        FaultOutcome::Pass => {}
        FaultOutcome::RateLimited => {
            core.counters.bump("rate_limited_injected");
            let resp = with_headers(ApiError::too_many_requests().into_response());
            return record(&core, key, resp);
        }
        FaultOutcome::ServerError(code) => {
            core.counters.bump("fault_server_error");
            let resp = with_headers(ApiError::server_error(code).into_response());
            return record(&core, key, resp);
        }
        FaultOutcome::Hang(d) => {
            tokio::time::sleep(d).await;
            core.counters.bump("fault_timeout");
            let resp = with_headers(ApiError::server_error(504).into_response());
            return record(&core, key, resp);
        }
    }

    let Some((ctx, headers)) = admitted else {
        let resp = lose_answer(&core, &key, next.run(req).await);
        return record(&core, key, resp);
    };
    let early = if let Some(e) = spec.agency_only.then(|| agency_refusal(&ctx)).flatten() {
        Some(e)
    } else if let Some(scope) = spec.scope.filter(|s| !ctx.allows(s)) {
        Some(ApiError::forbidden(format!(
            "The token is not authorized for this scope: {scope}"
        )))
    } else if let Some(e) = spec.version.and_then(|want| version_refusal(&req, want)) {
        Some(e)
    } else {
        undeclared_query(&method, &route, req.uri().query())
    };
    let mut resp = match early {
        Some(e) => e.into_response(),
        None => {
            req.extensions_mut().insert(ctx);
            lose_answer(&core, &key, next.run(req).await)
        }
    };
    headers.apply(resp.headers_mut());
    record(&core, key, resp)
}

/// A missing or wrong `Version` header (400).
fn version_refusal(req: &Request, want: &str) -> Option<ApiError> {
    match req.headers().get("version").and_then(|v| v.to_str().ok()) {
        Some(v) if v.trim() == want => None,
        Some(v) => Some(ApiError::bad_request(format!(
            "Version header {v} is not supported on this route; expected {want}"
        ))),
        None => Some(ApiError::bad_request(format!(
            "Version header was not found; expected {want}"
        ))),
    }
}

/// The query parameters a route declares in its OpenAPI spec ([C2], [B2], [CAL2], [LOC2],
/// [O2] `parameters[in=query]`); every other route declares none.
fn declared_query(method: &str, route: &str) -> &'static [&'static str] {
    match (method, route) {
        ("GET", "/contacts/") => &["locationId", "startAfterId", "startAfter", "query", "limit"],
        ("GET", "/contacts/search/duplicate") => &["locationId", "number", "email"],
        ("GET", "/contacts/business/{businessId}") => &["limit", "locationId", "skip", "query"],
        ("GET", "/businesses/") => &["locationId", "limit", "skip"],
        ("GET", "/calendars/events") => &[
            "locationId",
            "userId",
            "calendarId",
            "groupId",
            "startTime",
            "endTime",
        ],
        ("GET", "/calendars/") => &["locationId", "groupId", "showDrafted"],
        ("GET", "/locations/{locationId}/customFields") => &["model"],
        ("GET", "/oauth/installedLocations") => &[
            "skip",
            "limit",
            "query",
            "isInstalled",
            "companyId",
            "appId",
            "versionId",
            "onTrial",
            "planId",
            "locationId",
        ],
        _ => &[],
    }
}

/// GHL's DTOs whitelist their properties and refuse the others (API.md §1-§2: 422 "property X
/// should not exist"). Query DTOs are read the same way; a route whose spec declares no query
/// parameter at all may in truth ignore them, but the documents do not say so, and refusing
/// is the reading that shows a client sending what GHL would not read.
fn undeclared_query(method: &str, route: &str, query: Option<&str>) -> Option<ApiError> {
    let declared = declared_query(method, route);
    let mut unknown: Vec<String> = Vec::new();
    for (name, _) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !declared.contains(&name.as_ref()) {
            let m = format!("property {name} should not exist");
            if !unknown.contains(&m) {
                unknown.push(m);
            }
        }
    }
    (!unknown.is_empty()).then(|| ApiError::unprocessable(unknown))
}

/// The request as GHL's handlers see it. GHL runs on NestJS (Express), whose body parsers read
/// a JSON body only under `Content-Type: application/json` (or `application/*+json`) and a
/// form only under `application/x-www-form-urlencoded`; any other body reaches validation as
/// nothing at all. So a body sent under the wrong type is answered like an empty one: a 422
/// naming the required fields, or, where nothing is required, a 200 that changed nothing.
fn body_as_parsed(req: Request, route: &str) -> Request {
    let form = matches!(route, "/oauth/token" | "/oauth/locationToken");
    let mime = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let parsed = match mime.as_deref() {
        Some(m) if form => m == "application/x-www-form-urlencoded",
        Some(m) => {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        }
        None => false,
    };
    if parsed {
        return req;
    }
    let (parts, _) = req.into_parts();
    Request::from_parts(parts, axum::body::Body::empty())
}

/// Why a token may not call an `Agency-Access-Only` route, if it may not.
fn agency_refusal(ctx: &AuthCtx) -> Option<ApiError> {
    match (&ctx.principal, &ctx.client_id) {
        (super::auth::Principal::Company(_), Some(_)) => None,
        (super::auth::Principal::Company(_), None) => Some(ApiError::unauthorized(
            "This route requires an agency OAuth access token; Private Integration Tokens are not accepted",
        )),
        (super::auth::Principal::Location(_), _) => Some(ApiError::unauthorized(
            "This route requires an agency (Company) access token",
        )),
    }
}

/// A completed write whose answer is lost: the data changed, the client sees a 504.
fn lose_answer(core: &Core, key: &RouteKey, resp: Response) -> Response {
    if key.method != "GET" && resp.status().is_success() && core.lost_answers.lose(&key.to_string())
    {
        core.counters.bump("fault_lost_response");
        return ApiError::server_error(504).into_response();
    }
    resp
}

/// The answer for paths GHL does not serve (NestJS style), outside the counters.
pub async fn fallback(req: Request) -> Response {
    ApiError::no_route(req.method().as_str(), req.uri().path()).into_response()
}

// ------------------------------------------------------------------ handler helpers

/// Parse a JSON body as GHL does: an empty body is `{}`, malformed JSON is a 400.
pub fn json_body(bytes: &Bytes) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Unexpected token in JSON body: {e}")))
}

pub fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

pub fn created(v: Value) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

pub fn trace_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A required query parameter (422 when missing, like a NestJS DTO).
pub fn required_query<'a>(q: &'a HashMap<String, String>, name: &str) -> ApiResult<&'a str> {
    q.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::unprocessable(vec![format!("{name} should not be empty")]))
}

/// `skip`/`limit` style numeric query parameters (sent as strings, [C2]/[B2]).
pub fn number_query(
    q: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: Option<u64>,
) -> ApiResult<u64> {
    let Some(raw) = q.get(name).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    let n: u64 = raw.parse().map_err(|_| {
        ApiError::unprocessable(vec![format!(
            "{name} must be a number conforming to the specified constraints"
        )])
    })?;
    if let Some(max) = max
        && n > max
    {
        return Err(ApiError::unprocessable(vec![format!(
            "{name} must not be greater than {max}"
        )]));
    }
    Ok(n)
}

/// The contact's location, after checking the caller may see it (403 otherwise).
pub fn contact_location(core: &Core, ctx: &AuthCtx, contact_id: &str) -> ApiResult<String> {
    let loc = core.store().contact(contact_id)?.location_id.clone();
    ctx.require_location(&loc)?;
    Ok(loc)
}

pub fn unit_result(r: ApiResult<Response>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

pub fn succeeded() -> Value {
    // Sic: GHL's field is spelt `succeded` ([C2] `DeleteContactsSuccessfulResponseDto`).
    json!({"succeded": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_their_documented_scope_and_version() {
        let s = route_spec("GET", "/contacts/{contactId}");
        assert_eq!(s.scope, Some("contacts.readonly"));
        assert_eq!(
            route_spec("POST", "/contacts/search").scope,
            Some("contacts.readonly")
        );
        assert_eq!(
            route_spec("DELETE", "/contacts/{contactId}/tags").scope,
            Some("contacts.write")
        );
        assert_eq!(
            route_spec("GET", "/calendars/events/appointments/{eventId}").version,
            Some(VERSION_2021_04_15)
        );
        // Listing calendars and reading their events need different scopes ([CAL2]).
        assert_eq!(
            route_spec("GET", "/calendars/").scope,
            Some("calendars.readonly")
        );
        assert_eq!(
            route_spec("GET", "/calendars/events").scope,
            Some("calendars/events.readonly")
        );
        assert_eq!(
            route_spec("POST", "/businesses/").scope,
            Some("businesses.write")
        );
        assert!(!route_spec("POST", "/oauth/token").bearer);
        let installed = route_spec("GET", "/oauth/installedLocations");
        assert_eq!(installed.scope, Some("oauth.readonly"));
        assert_eq!(installed.version, Some(VERSION_2021_07_28));
        assert!(installed.agency_only);
        assert!(route_spec("POST", "/oauth/locationToken").agency_only);
        assert!(!route_spec("GET", "/contacts/{contactId}").agency_only);
        assert_eq!(
            route_spec("POST", "/locations/{locationId}/tasks/search").scope,
            Some("locations/tasks.readonly")
        );
    }
}
