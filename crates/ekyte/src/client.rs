//! The HTTP plumbing shared by the three eKyte surfaces: one `reqwest` client, the retry loop,
//! the request budget, metrics, and the per-surface reading of answers.
//!
//! Guarantees:
//! - a request is sent again only when it is idempotent and failed with 429, a 5xx or a
//!   transport error (timeout, refused connection), at most `retry.max_attempts` times in all,
//!   with exponential backoff and full jitter (or the server's `Retry-After`);
//! - every attempt is counted against the caller's [`Calls`] (which may bound them) and in
//!   `ges_api_calls_total{provider="ekyte",route,status,tenant}`;
//! - URLs (which carry `apiKey` / `token`, API.md §2) never reach a log line or an error:
//!   routes are logged by template, reqwest errors are stripped of their URL, and text taken
//!   from a response is scrubbed of the request's secrets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ports::ApiError;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::config::{ConfigError, EkyteConfig, RetryConfig};
use crate::creds::CredsCache;
use crate::dto::{AutomationErrorDto, Envelope};
use crate::error::{BudgetSpent, scrub};

/// Counts the HTTP requests (attempts) of one operation for one tenant, and optionally
/// bounds them. The tenant labels each request's metric and span.
#[derive(Debug)]
pub(crate) struct Calls {
    made: AtomicU32,
    limit: Option<u32>,
    tenant: String,
    /// The scope's meter: every request sent counts there too.
    meter: std::sync::Arc<ports::CallMeter>,
}

impl Calls {
    pub fn unbounded(scope: &ports::Scope) -> Self {
        Self {
            made: AtomicU32::new(0),
            limit: None,
            tenant: scope.tenant.id.to_string(),
            meter: scope.calls.clone(),
        }
    }

    pub fn bounded(scope: &ports::Scope, limit: u32) -> Self {
        Self {
            limit: Some(limit),
            ..Self::unbounded(scope)
        }
    }

    pub fn made(&self) -> u32 {
        self.made.load(Ordering::Relaxed)
    }

    fn take(&self) -> Result<(), ApiError> {
        let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        match self.limit {
            Some(limit) if n > limit => {
                self.made.fetch_sub(1, Ordering::Relaxed);
                Err(ApiError::Unknown(anyhow::Error::new(BudgetSpent(limit))))
            }
            _ => {
                self.meter.ekyte();
                Ok(())
            }
        }
    }
}

/// One request to send (and maybe send again).
pub(crate) struct Request<'a> {
    pub method: Method,
    /// Metrics and log label: `GET /v1.2/tasks`, `MCP tools/call update_task`. Never the URL.
    pub route: String,
    pub url: Url,
    pub body: Option<&'a Value>,
    pub headers: Vec<(&'static str, String)>,
    /// Values to scrub from any text taken from the answer.
    pub secrets: Vec<&'a SecretString>,
    pub idempotent: bool,
}

/// An answer that was not a 429, a 5xx or a transport failure.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    retry: RetryConfig,
    max_pages: u32,
    /// Forgets a tenant's credentials when eKyte refuses them.
    creds: Arc<CredsCache>,
}

impl Http {
    pub fn new(config: &EkyteConfig, creds: Arc<CredsCache>) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("ghl-ekyte-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError {
                field: "http",
                problem: e.without_url().to_string(),
            })?;
        Ok(Self {
            client,
            base: config.base()?,
            retry: config.retry.clone(),
            max_pages: config.max_pages,
            creds,
        })
    }

    /// Forget `tenant`'s cached credentials: eKyte refused them, so the next operation reads
    /// the store again.
    pub fn forget_credentials(&self, tenant: &str) {
        self.creds.forget(tenant);
    }

    /// `base_url` + a relative path.
    pub fn url(&self, relative: &str) -> Result<Url, ApiError> {
        self.base
            .join(relative.trim_start_matches('/'))
            .map_err(|e| ApiError::Unknown(anyhow::anyhow!("building the URL of {relative}: {e}")))
    }

    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// Send with the retry policy. Returns any answer that is not 429/5xx; those and transport
    /// failures come back as `RateLimited` / `Transient` once retries (if any) are spent.
    pub async fn send(&self, calls: &Calls, req: &Request<'_>) -> Result<Response, ApiError> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "ekyte.call",
            otel.name = %req.route,
            otel.kind = "client",
            provider = "ekyte",
            tenant = %calls.tenant,
            status = tracing::field::Empty,
        );
        Box::pin(self.send_in_span(calls, req))
            .instrument(span)
            .await
    }

    async fn send_in_span(&self, calls: &Calls, req: &Request<'_>) -> Result<Response, ApiError> {
        let attempts = if req.idempotent {
            self.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (err, retry_after) = match self.attempt(calls, req).await {
                Ok(resp) => return Ok(resp),
                Err((e, after)) => (e, after),
            };
            if attempt >= attempts || !crate::error::is_retryable(&err) {
                return Err(err);
            }
            let wait = self.retry.backoff(attempt, retry_after);
            tracing::debug!(route = %req.route, attempt, ?wait, error = %err, "retrying eKyte request");
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        calls: &Calls,
        req: &Request<'_>,
    ) -> Result<Response, (ApiError, Option<Duration>)> {
        calls.take().map_err(|e| (e, None))?;
        let started = Instant::now();
        let mut builder = self.client.request(req.method.clone(), req.url.clone());
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = req.body {
            builder = builder.json(body);
        }
        let sent = builder.send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "error"
                };
                count(calls, &req.route, kind);
                tracing::debug!(route = %req.route, kind, elapsed = ?started.elapsed(), "eKyte request failed");
                let e = e.without_url();
                return Err((
                    ApiError::transient(format!("{} failed ({kind})", req.route), e),
                    None,
                ));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                count(calls, &req.route, "body_error");
                let e = e.without_url();
                return Err((
                    ApiError::transient(format!("{} answer could not be read", req.route), e),
                    None,
                ));
            }
        };
        count(calls, &req.route, status.as_str());
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // The next operation reads the store again: the key may have been replaced.
            self.forget_credentials(&calls.tenant);
        }
        tracing::debug!(route = %req.route, status = status.as_u16(), elapsed = ?started.elapsed(), "eKyte request");
        if status == StatusCode::TOO_MANY_REQUESTS {
            let after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err((ApiError::RateLimited { retry_after: after }, after));
        }
        if status.is_server_error() {
            let excerpt = excerpt(&scrub(&body, &req.secrets));
            return Err((
                ApiError::Transient {
                    message: format!("{} answered HTTP {}: {excerpt}", req.route, status.as_u16()),
                    source: None,
                },
                None,
            ));
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Every page of a BI list (API.md §3.1): `?page=N` from 1 until
    /// `paging.currentPage.number >= paging.totalPages`, `apiKey` in the query.
    pub async fn bi_list<T: DeserializeOwned>(
        &self,
        calls: &Calls,
        path: &str,
        query: &[(&str, String)],
        api_key: &SecretString,
    ) -> Result<Vec<T>, ApiError> {
        let route = format!("GET /{path}");
        let mut out = Vec::new();
        let mut page: u32 = 1;
        let mut previous: Option<Vec<Value>> = None;
        loop {
            if page > self.max_pages {
                return Err(ApiError::Unknown(anyhow::anyhow!(
                    "{route}: paging did not end after {} pages",
                    self.max_pages
                )));
            }
            let mut url = self.url(path)?;
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in query {
                    q.append_pair(k, v);
                }
                q.append_pair("page", &page.to_string());
                q.append_pair("apiKey", api_key.expose_secret());
            }
            let req = Request {
                method: Method::GET,
                route: route.clone(),
                url,
                body: None,
                headers: Vec::new(),
                secrets: vec![api_key],
                idempotent: true,
            };
            let resp = self.send(calls, &req).await?;
            let env: Envelope<Value> = read_bi(&req, &resp)?;
            let data = env.data.unwrap_or_default();
            let got = data.len();
            // A server that ignores `page` serves the first page again and again: stop at the
            // first repeat rather than read it `max_pages` times and keep every copy.
            if got > 0 && previous.as_ref() == Some(&data) {
                tracing::warn!(route = %route, page, "eKyte served the same page twice; the listing ends here");
                return Ok(out);
            }
            out.extend(crate::dto::keep_parsed::<T>(data.clone(), "BI list row"));
            previous = Some(data);
            let paging = env.paging.unwrap_or_default();
            let number = paging
                .current_page
                .and_then(|c| c.number)
                .unwrap_or(i64::from(page));
            match paging.total_pages {
                Some(total) if number < total && got > 0 => page += 1,
                _ => return Ok(out),
            }
        }
    }

    /// A GET on the automation API (API.md §4.1): bare JSON, `apiKey` + `CompanyId`.
    pub async fn automation_get(
        &self,
        calls: &Calls,
        path: &str,
        api_key: &SecretString,
        company: &str,
    ) -> Result<Value, ApiError> {
        let req = self.automation_get_request(path, api_key, company)?;
        let resp = self.send(calls, &req).await?;
        read_automation(&req, &resp)
    }

    /// A GET on the automation API whose answer is a listing: only the rows `keep` accepts
    /// are kept ([`read_automation_rows`]).
    pub async fn automation_rows<T: DeserializeOwned>(
        &self,
        calls: &Calls,
        path: &str,
        api_key: &SecretString,
        company: &str,
        what: &str,
        keep: impl FnMut(&T) -> bool,
    ) -> Result<Vec<T>, ApiError> {
        let req = self.automation_get_request(path, api_key, company)?;
        let resp = self.send(calls, &req).await?;
        read_automation_rows(&req, &resp, what, keep)
    }

    fn automation_get_request<'a>(
        &self,
        path: &str,
        api_key: &'a SecretString,
        company: &str,
    ) -> Result<Request<'a>, ApiError> {
        let mut url = self.url(path)?;
        url.query_pairs_mut()
            .append_pair("apiKey", api_key.expose_secret())
            .append_pair("CompanyId", company);
        Ok(Request {
            method: Method::GET,
            route: format!("GET /{path}"),
            url,
            body: None,
            headers: Vec::new(),
            secrets: vec![api_key],
            idempotent: true,
        })
    }

    /// A POST on the automation API (API.md §4.2): PascalCase body, `apiKey` + `CompanyId` +
    /// `UserEmail` in the query. Sent once: creates are not idempotent.
    pub async fn automation_post(
        &self,
        calls: &Calls,
        path: &str,
        body: &Value,
        api_key: &SecretString,
        company: &str,
        user_email: &str,
    ) -> Result<Value, ApiError> {
        let mut url = self.url(path)?;
        url.query_pairs_mut()
            .append_pair("apiKey", api_key.expose_secret())
            .append_pair("CompanyId", company)
            .append_pair("UserEmail", user_email);
        let req = Request {
            method: Method::POST,
            route: format!("POST /{path}"),
            url,
            body: Some(body),
            headers: Vec::new(),
            secrets: vec![api_key],
            idempotent: false,
        };
        let resp = self.send(calls, &req).await?;
        read_automation(&req, &resp)
    }
}

fn count(calls: &Calls, route: &str, status: &str) {
    tracing::Span::current().record("status", status);
    metrics::counter!(
        "ges_api_calls_total",
        "provider" => "ekyte",
        "route" => route.to_owned(),
        "status" => status.to_owned(),
        "tenant" => calls.tenant.clone()
    )
    .increment(1);
}

/// At most 300 characters of a body, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut out: String = trimmed.chars().take(300).collect();
    if out.len() < trimmed.len() {
        out.push('…');
    }
    out
}

/// A BI answer (API.md §3.1): the envelope's `error` may be set on 2xx or not; an invalid key
/// is HTTP 401 (with `error.code` "404", an internal code).
pub(crate) fn read_bi<T: DeserializeOwned>(
    req: &Request<'_>,
    resp: &Response,
) -> Result<Envelope<T>, ApiError> {
    let status = resp.status;
    let raw = || excerpt(&scrub(&resp.body, &req.secrets));
    match serde_json::from_str::<Envelope<T>>(&resp.body) {
        Ok(env) if status.is_success() => match &env.error {
            None => Ok(env),
            Some(e) => Err(ApiError::Unknown(anyhow::anyhow!(
                "{} answered HTTP {} with an error: {}",
                req.route,
                status.as_u16(),
                scrub(&e.describe(), &req.secrets)
            ))),
        },
        Err(e) if status.is_success() => Err(ApiError::Unknown(
            crate::error::shape_error(&e).context(format!(
                "{} answered HTTP {} with a body that is not the BI envelope",
                req.route,
                status.as_u16()
            )),
        )),
        Ok(env) => {
            let text = env
                .error
                .map(|e| scrub(&e.describe(), &req.secrets))
                .unwrap_or_else(raw);
            Err(status_error(req, status, text))
        }
        Err(_) => Err(status_error(req, status, raw())),
    }
}

/// An automation answer (API.md §4): 2xx JSON, or `{Id, Text}` on 400/404, or an empty 401.
pub(crate) fn read_automation(req: &Request<'_>, resp: &Response) -> Result<Value, ApiError> {
    if !resp.status.is_success() {
        return Err(automation_refusal(req, resp));
    }
    serde_json::from_str(&resp.body).map_err(|e| not_json(req, resp, &e))
}

/// The rows of a 2xx automation listing (a bare JSON array, API.md §4.1) that `keep` accepts,
/// decoded one by one: the rows left out are never held. `/n8n/polling/boards` answers every
/// board of the company; held whole as a `Value`, the listing took 1.9 MiB of the worker at
/// 3,000 boards in a heap profile (issue 17), for the one or two rows of one workspace that it
/// wanted.
/// Errors as [`read_automation`]'s; a body that is JSON but not an array of `T` is `Unknown`,
/// naming `what`.
pub(crate) fn read_automation_rows<T: DeserializeOwned>(
    req: &Request<'_>,
    resp: &Response,
    what: &str,
    keep: impl FnMut(&T) -> bool,
) -> Result<Vec<T>, ApiError> {
    if !resp.status.is_success() {
        return Err(automation_refusal(req, resp));
    }
    let mut de = serde_json::Deserializer::from_str(&resp.body);
    let rows = serde::Deserializer::deserialize_seq(
        &mut de,
        KeptRows {
            keep,
            rows: std::marker::PhantomData,
        },
    )
    .and_then(|rows| de.end().map(|()| rows));
    rows.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Unknown(
            crate::error::shape_error(&e).context(format!("{what} has an unknown shape")),
        ),
        _ => not_json(req, resp, &e),
    })
}

/// A sequence visitor keeping the elements `keep` accepts.
struct KeptRows<T, F> {
    keep: F,
    rows: std::marker::PhantomData<T>,
}

impl<'de, T: DeserializeOwned, F: FnMut(&T) -> bool> serde::de::Visitor<'de> for KeptRows<T, F> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of rows")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut kept = Vec::new();
        while let Some(row) = seq.next_element::<T>()? {
            if (self.keep)(&row) {
                kept.push(row);
            }
        }
        Ok(kept)
    }
}

fn not_json(req: &Request<'_>, resp: &Response, e: &serde_json::Error) -> ApiError {
    ApiError::Unknown(crate::error::shape_error(e).context(format!(
        "{} answered HTTP {} with a body that is not JSON",
        req.route,
        resp.status.as_u16()
    )))
}

/// The error of an automation answer that is not 2xx.
fn automation_refusal(req: &Request<'_>, resp: &Response) -> ApiError {
    let status = resp.status;
    let refusal: Option<AutomationErrorDto> = serde_json::from_str(&resp.body).ok();
    match (status, refusal) {
        (StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND, Some(r)) => ApiError::Invalid {
            // eKyte's own (Portuguese) text, kept as it is.
            messages: vec![scrub(&r.text, &req.secrets)],
        },
        (StatusCode::UNAUTHORIZED, _) => ApiError::Unauthorized {
            message: format!(
                "eKyte refused the API key or the company id on {} (HTTP 401); the key must \
                 belong to the tenant's eKyte company",
                req.route
            ),
        },
        (_, refusal) => {
            let text = refusal
                .map(|r| scrub(&r.text, &req.secrets))
                .unwrap_or_else(|| excerpt(&scrub(&resp.body, &req.secrets)));
            status_error(req, status, text)
        }
    }
}

/// The port case for an HTTP status that is neither success, 429 nor 5xx.
pub(crate) fn status_error(req: &Request<'_>, status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized {
            message: format!(
                "eKyte refused the credentials on {} (HTTP 401): {text}; set a new key or token",
                req.route
            ),
        },
        StatusCode::FORBIDDEN => ApiError::Forbidden {
            message: format!("{} (HTTP 403): {text}", req.route),
            missing_scope: None,
        },
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid {
            messages: vec![text],
        },
        StatusCode::CONFLICT => ApiError::Conflict {
            message: format!("{}: {text}", req.route),
            existing_id: None,
        },
        other => ApiError::Unknown(anyhow::anyhow!(
            "{} answered HTTP {}: {text}",
            req.route,
            other.as_u16()
        )),
    }
}
