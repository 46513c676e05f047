//! The HTTP side of every GHL call: the route table (paths, methods, `Version` headers and
//! scopes of API.md §4, §7), and [`Transport::send`], which runs one logical call.
//!
//! One logical call = for each attempt: wait for a slot of the (app, location) rate budget,
//! send, feed the answer's `X-RateLimit-*` headers back to the budget, count the attempt in
//! `ges_api_calls_total{provider="ghl",route,status,tenant}`, all inside one client span named
//! by the route (its tenant an attribute, never the URL, which may carry an e-mail). Retries are bounded by the
//! [`RetryPolicy`](crate::config::RetryPolicy) and use full-jitter exponential backoff:
//! - 429: always retried (the request was refused, nothing happened);
//! - 5xx, timeouts, broken connections: retried only for idempotent requests — a create that
//!   ends that way comes back as "outcome unknown" for the caller to resolve by a lookup;
//! - a connection that could not be opened: retried whatever the method (nothing was sent).
//!
//! 401s are not handled here: the caller owns the credentials and does one refresh-and-retry.
//! Tokens are sent with `bearer_auth`, which marks the header sensitive; nothing here logs one.

use std::sync::Arc;
use std::time::Duration;

use ports::{ApiError, Priority};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::budget::{BudgetKey, RateBudgets, RateHeaders};
use crate::config::{GhlAdapterConfig, RetryPolicy};
use crate::error::{CallError, ConfigError, ErrorBody, GhlHttpError, Unknown};

/// `Version` of Contacts, Businesses, Locations and OAuth location tokens (API.md §1).
pub(crate) const VERSION_2021_07_28: &str = "2021-07-28";
/// `Version` of Calendars (API.md §1, \[CAL2\]).
pub(crate) const VERSION_2021_04_15: &str = "2021-04-15";

/// Whether a request may be sent again when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Reads, PUTs, DELETEs, searches, tag sets: repeating them changes nothing more.
    Idempotent,
    /// Creates: a repeat may create a second record.
    Unsafe,
}

/// One documented endpoint.
#[derive(Debug)]
pub(crate) struct Route {
    pub method: Method,
    /// `METHOD /path/{template}`: the metric label and the log field.
    pub label: &'static str,
    /// `None` for `POST /oauth/token`, which declares no `Version` (\[O2\]).
    pub version: Option<&'static str>,
    /// The scope GHL documents for it (API.md §4), named when a 403 does not say.
    pub scope: &'static str,
    pub safety: Safety,
}

macro_rules! route {
    ($name:ident, $method:ident, $label:literal, $version:expr, $scope:literal, $safety:ident) => {
        pub(crate) static $name: Route = Route {
            method: Method::$method,
            label: $label,
            version: $version,
            scope: $scope,
            safety: Safety::$safety,
        };
    };
}

/// The route table (API.md §4.1–§4.6, §7).
pub(crate) mod routes {
    use super::*;

    const V1: Option<&str> = Some(VERSION_2021_07_28);
    const CAL: Option<&str> = Some(VERSION_2021_04_15);

    route!(
        GET_CONTACT,
        GET,
        "GET /contacts/{contactId}",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        CREATE_CONTACT,
        POST,
        "POST /contacts/",
        V1,
        "contacts.write",
        Unsafe
    );
    route!(
        UPSERT_CONTACT,
        POST,
        "POST /contacts/upsert",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        UPDATE_CONTACT,
        PUT,
        "PUT /contacts/{contactId}",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        DELETE_CONTACT,
        DELETE,
        "DELETE /contacts/{contactId}",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        LIST_CONTACTS,
        GET,
        "GET /contacts/",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        SEARCH_CONTACTS,
        POST,
        "POST /contacts/search",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        FIND_DUPLICATE,
        GET,
        "GET /contacts/search/duplicate",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        BUSINESS_CONTACTS,
        GET,
        "GET /contacts/business/{businessId}",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        GET_BUSINESS,
        GET,
        "GET /businesses/{businessId}",
        V1,
        "businesses.readonly",
        Idempotent
    );
    route!(
        LIST_TASKS,
        GET,
        "GET /contacts/{contactId}/tasks",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        GET_TASK,
        GET,
        "GET /contacts/{contactId}/tasks/{taskId}",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        CREATE_TASK,
        POST,
        "POST /contacts/{contactId}/tasks",
        V1,
        "contacts.write",
        Unsafe
    );
    route!(
        UPDATE_TASK,
        PUT,
        "PUT /contacts/{contactId}/tasks/{taskId}",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        COMPLETE_TASK,
        PUT,
        "PUT /contacts/{contactId}/tasks/{taskId}/completed",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        DELETE_TASK,
        DELETE,
        "DELETE /contacts/{contactId}/tasks/{taskId}",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        SEARCH_TASKS,
        POST,
        "POST /locations/{locationId}/tasks/search",
        V1,
        "locations/tasks.readonly",
        Idempotent
    );
    route!(
        LIST_NOTES,
        GET,
        "GET /contacts/{contactId}/notes",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        GET_NOTE,
        GET,
        "GET /contacts/{contactId}/notes/{id}",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        CREATE_NOTE,
        POST,
        "POST /contacts/{contactId}/notes",
        V1,
        "contacts.write",
        Unsafe
    );
    route!(
        UPDATE_NOTE,
        PUT,
        "PUT /contacts/{contactId}/notes/{id}",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        DELETE_NOTE,
        DELETE,
        "DELETE /contacts/{contactId}/notes/{id}",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        LIST_APPOINTMENTS,
        GET,
        "GET /contacts/{contactId}/appointments",
        V1,
        "contacts.readonly",
        Idempotent
    );
    route!(
        GET_APPOINTMENT,
        GET,
        "GET /calendars/events/appointments/{eventId}",
        CAL,
        "calendars/events.readonly",
        Idempotent
    );
    route!(
        LIST_CUSTOM_FIELDS,
        GET,
        "GET /locations/{locationId}/customFields",
        V1,
        "locations/customFields.readonly",
        Idempotent
    );
    route!(
        LIST_CALENDARS,
        GET,
        "GET /calendars/",
        CAL,
        "calendars.readonly",
        Idempotent
    );
    route!(
        CALENDAR_EVENTS,
        GET,
        "GET /calendars/events",
        CAL,
        "calendars/events.readonly",
        Idempotent
    );
    // Adding or removing a set of tags twice is the same as once.
    route!(
        ADD_TAGS,
        POST,
        "POST /contacts/{contactId}/tags",
        V1,
        "contacts.write",
        Idempotent
    );
    route!(
        REMOVE_TAGS,
        DELETE,
        "DELETE /contacts/{contactId}/tags",
        V1,
        "contacts.write",
        Idempotent
    );
    // A code works once: a repeat after an unknown outcome cannot succeed.
    route!(EXCHANGE_CODE, POST, "POST /oauth/token", None, "", Unsafe);
    // Repeating an identical refresh within 30 s returns the same pair ([CHLOG], API.md §7),
    // so a refresh whose answer was lost is retried at once rather than given up.
    route!(
        REFRESH_TOKEN,
        POST,
        "POST /oauth/token",
        None,
        "",
        Idempotent
    );
    route!(
        LOCATION_TOKEN,
        POST,
        "POST /oauth/locationToken",
        V1,
        "oauth.write",
        Idempotent
    );
    route!(
        GET_LOCATION,
        GET,
        "GET /locations/{locationId}",
        V1,
        "locations.readonly",
        Idempotent
    );
    route!(
        INSTALLED_LOCATIONS,
        GET,
        "GET /oauth/installedLocations",
        V1,
        "oauth.readonly",
        Idempotent
    );
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Json(Value),
    /// `application/x-www-form-urlencoded` (the OAuth endpoints, API.md §7).
    Form(Vec<(&'static str, String)>),
}

/// One request of a logical call.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub route: &'static Route,
    /// The concrete path (ids are validated newtypes: nothing needs escaping).
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
    pub safety: Safety,
}

impl ApiRequest {
    pub fn new(route: &'static Route, path: impl Into<String>) -> Self {
        Self {
            route,
            path: path.into(),
            query: Vec::new(),
            body: Body::None,
            safety: route.safety,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: impl Into<Value>) -> Self {
        self.body = Body::Json(body.into());
        self
    }

    pub fn form(mut self, fields: Vec<(&'static str, String)>) -> Self {
        self.body = Body::Form(fields);
        self
    }

    pub fn safety(mut self, safety: Safety) -> Self {
        self.safety = safety;
        self
    }
}

/// A 2xx answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: Vec<u8>,
    pub route: &'static str,
}

impl Answer {
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| CallError::Decode {
            route: self.route,
            source: anyhow::Error::new(e),
        })
    }
}

/// The HTTP client, the budgets and the retry policy, shared by every call of the process.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
    budgets: Arc<RateBudgets>,
    retry: RetryPolicy,
}

enum Attempt {
    Answered { status: StatusCode, body: Vec<u8> },
    Failed(reqwest::Error),
}

impl Transport {
    pub fn new(config: &GhlAdapterConfig, budgets: Arc<RateBudgets>) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("ghl-ekyte-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::HttpClient)?;
        Ok(Self {
            http,
            base: config.api_base.as_str().trim_end_matches('/').to_owned(),
            budgets,
            retry: config.retry.clone(),
        })
    }

    pub fn budgets(&self) -> &Arc<RateBudgets> {
        &self.budgets
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    fn build(
        &self,
        req: &ApiRequest,
        bearer: Option<&SecretString>,
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let url = format!("{}{}", self.base, req.path);
        let url = reqwest::Url::parse(&url).map_err(|e| {
            CallError::Api(ApiError::Unknown(
                anyhow::Error::new(e).context(format!("building the URL of {}", req.route.label)),
            ))
        })?;
        let mut b = self
            .http
            .request(req.route.method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(v) = req.route.version {
            b = b.header("Version", v);
        }
        if let Some(token) = bearer {
            b = b.bearer_auth(token.expose_secret());
        }
        if !req.query.is_empty() {
            b = b.query(&req.query);
        }
        Ok(match &req.body {
            Body::None => b,
            Body::Json(v) => b.json(v),
            Body::Form(fields) => b.form(fields),
        })
    }

    async fn attempt(
        &self,
        req: &ApiRequest,
        bearer: Option<&SecretString>,
        budget: Option<&(Arc<crate::budget::Budget>, Priority)>,
        tenant: &str,
    ) -> Result<Attempt, CallError> {
        let permit = match budget {
            Some((b, priority)) => Some(b.acquire(*priority).await.map_err(CallError::Api)?),
            None => None,
        };
        let request = self.build(req, bearer)?;
        let started = std::time::Instant::now();
        let outcome = match request.send().await {
            Ok(resp) => {
                let status = resp.status();
                if let Some(p) = permit {
                    p.complete(
                        RateHeaders::from_headers(resp.headers()),
                        status == StatusCode::TOO_MANY_REQUESTS,
                    );
                }
                match resp.bytes().await {
                    Ok(body) => Attempt::Answered {
                        status,
                        body: body.to_vec(),
                    },
                    Err(e) => Attempt::Failed(e.without_url()),
                }
            }
            Err(e) => {
                drop(permit);
                // The URL may carry an e-mail or a phone (duplicate lookups): keep it out of
                // logs and dead letters; the route label says enough.
                Attempt::Failed(e.without_url())
            }
        };
        let status = match &outcome {
            Attempt::Answered { status, .. } => status.as_u16().to_string(),
            Attempt::Failed(e) if e.is_timeout() => "timeout".to_owned(),
            Attempt::Failed(e) if e.is_connect() => "connect_error".to_owned(),
            Attempt::Failed(_) => "transport_error".to_owned(),
        };
        tracing::Span::current().record("status", status.as_str());
        metrics::counter!(
            "ges_api_calls_total",
            "provider" => "ghl",
            "route" => req.route.label,
            "status" => status,
            "tenant" => tenant.to_owned(),
        )
        .increment(1);
        metrics::histogram!(
            "ges_api_call_seconds",
            "provider" => "ghl",
            "route" => req.route.label,
        )
        .record(started.elapsed().as_secs_f64());
        Ok(outcome)
    }

    /// Run one logical call. `budget` is `None` only for the OAuth token endpoint, which
    /// authenticates by client credentials and is not counted against a location. `tenant`
    /// labels the call's metrics and span (`None`: a call made for no tenant).
    pub async fn send(
        &self,
        req: &ApiRequest,
        bearer: Option<&SecretString>,
        budget: Option<(&BudgetKey, Priority)>,
        tenant: Option<&str>,
    ) -> Result<Answer, CallError> {
        use tracing::Instrument as _;
        let tenant = tenant.unwrap_or_default();
        let span = tracing::info_span!(
            "ghl.call",
            otel.name = req.route.label,
            otel.kind = "client",
            provider = "ghl",
            tenant,
            status = tracing::field::Empty,
        );
        Box::pin(self.send_in_span(req, bearer, budget, tenant))
            .instrument(span)
            .await
    }

    async fn send_in_span(
        &self,
        req: &ApiRequest,
        bearer: Option<&SecretString>,
        budget: Option<(&BudgetKey, Priority)>,
        tenant: &str,
    ) -> Result<Answer, CallError> {
        let budget = budget.map(|(key, p)| (self.budgets.budget(key), p));
        let label = req.route.label;
        let mut failures = 0u32;
        let mut after_unknown = false;
        loop {
            let outcome = Box::pin(self.attempt(req, bearer, budget.as_ref(), tenant)).await?;
            failures += 1;
            let retry_left = failures < self.retry.max_attempts;
            match outcome {
                Attempt::Answered { status, body } if status.is_success() => {
                    return Ok(Answer { body, route: label });
                }
                Attempt::Answered { status, .. } if status == StatusCode::TOO_MANY_REQUESTS => {
                    if !retry_left {
                        let retry_after = budget
                            .as_ref()
                            .map(|(b, _)| b.interval())
                            .unwrap_or_else(|| self.retry.ceiling(failures));
                        tracing::warn!(
                            route = label,
                            attempts = failures,
                            "429s outlasted the backoff"
                        );
                        return Err(CallError::RateLimited {
                            retry_after: Some(retry_after),
                        });
                    }
                    tracing::warn!(
                        route = label,
                        attempt = failures,
                        "GHL answered 429; backing off"
                    );
                }
                Attempt::Answered { status, body } if status.is_server_error() => {
                    let error = GhlHttpError {
                        status: status.as_u16(),
                        messages: ErrorBody::parse(&body).messages(),
                    };
                    if req.safety == Safety::Unsafe || !retry_left {
                        return Err(CallError::OutcomeUnknown {
                            route: label,
                            cause: Unknown::Status(error),
                        });
                    }
                    after_unknown = true;
                    tracing::warn!(route = label, attempt = failures, %error, "retrying");
                }
                Attempt::Answered { status, body } => {
                    return Err(CallError::Status {
                        route: label,
                        status,
                        body: Box::new(ErrorBody::parse(&body)),
                        scope: req.route.scope,
                        after_unknown,
                    });
                }
                Attempt::Failed(e) => {
                    let not_sent = e.is_connect();
                    if !retry_left || (!not_sent && req.safety == Safety::Unsafe) {
                        return Err(if not_sent {
                            CallError::NotSent {
                                route: label,
                                source: e,
                            }
                        } else {
                            CallError::OutcomeUnknown {
                                route: label,
                                cause: Unknown::Transport(e),
                            }
                        });
                    }
                    after_unknown |= !not_sent;
                    tracing::warn!(route = label, attempt = failures, error = %e, "retrying");
                }
            }
            tokio::time::sleep(self.retry.delay(failures)).await;
        }
    }
}

/// Sleep helper for callers that resolve unknown outcomes themselves.
pub(crate) async fn backoff(policy: &RetryPolicy, failures: u32) {
    let d: Duration = policy.delay(failures);
    tokio::time::sleep(d).await;
}
