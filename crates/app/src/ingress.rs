//! The HTTP ingress (axum): GHL webhooks, the OAuth callback, health and metrics.
//!
//! `POST /webhooks/ghl` answers GHL only after the event is durably accepted (publisher
//! confirm). GHL retries a webhook **only on HTTP 429** (API.md §9.5), so every failure to
//! accept durably — broker down or slow, store down — is answered 429, never 5xx; a bad
//! signature is 401, a malformed or stale payload 400, a wrong content type 415, a body over
//! the limit 413, and a duplicate `webhookId` 200 without a second publish.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::counter;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use domain::{Tenant, TenantId};
use ghl::webhook::{Signatures, WebhookVerifier};
use ghl::{GhlAdapter, OAuthClient};
use ports::Clock;
use ports::ghl::GhlEventKind;
use ports::queue::{Envelope, Payload, Publisher};
use ports::store::{CredentialStore, Inbox, Provider, StoreHealth, TenantStore};

use crate::metrics::Telemetry;
use crate::oauth_state::StateSigner;

/// The inbox source of webhook ids (dedupe at the door).
pub const INBOX_WEBHOOKS: &str = "webhook";

/// What the webhook route needs.
#[derive(Clone)]
pub struct WebhookState {
    pub verifier: Arc<WebhookVerifier>,
    pub tenants: Arc<dyn TenantStore>,
    pub inbox: Arc<dyn Inbox>,
    pub publisher: Arc<dyn Publisher>,
    pub credentials: Arc<dyn CredentialStore>,
    pub clock: Arc<dyn Clock>,
    /// Drops cached GHL tokens after an install or uninstall.
    pub ghl: Option<GhlAdapter>,
}

/// What the OAuth callback needs.
#[derive(Clone)]
pub struct OAuthState {
    pub oauth: Arc<OAuthClient>,
    pub tenants: Arc<dyn TenantStore>,
    pub credentials: Arc<dyn CredentialStore>,
    pub signer: Arc<StateSigner>,
    pub ghl: Option<GhlAdapter>,
}

/// What the health and metrics routes need.
#[derive(Clone)]
pub struct HealthState {
    pub store: Arc<dyn StoreHealth>,
    pub broker_ready: Arc<dyn Fn() -> bool + Send + Sync>,
    pub telemetry: Arc<Telemetry>,
}

/// The router. Each route group has only the state it uses.
pub fn router(
    webhooks: WebhookState,
    oauth: Option<OAuthState>,
    health: HealthState,
    max_body_bytes: usize,
) -> Router {
    let mut app = Router::new()
        .route("/webhooks/ghl", post(webhook))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(webhooks);
    if let Some(oauth) = oauth {
        app = app.merge(
            Router::new()
                .route("/oauth/callback", get(oauth_callback))
                .with_state(oauth),
        );
    }
    app.merge(health_router(health))
}

/// Health and metrics only (what a `worker` serves).
pub fn health_router(health: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .with_state(health)
}

/// Serve until `shutdown`; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "ingress listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

fn answer(status: StatusCode, outcome: &'static str, message: impl Into<String>) -> Response {
    counter!("ges_webhooks_total", "outcome" => outcome).increment(1);
    let body = serde_json::json!({ "status": outcome, "message": message.into() });
    (status, axum::Json(body)).into_response()
}

/// The webhook route, in a server span: the trace a webhook starts runs from here through the
/// broker to the worker.
async fn webhook(State(s): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "webhook",
        otel.name = "POST /webhooks/ghl",
        otel.kind = "server",
        tenant = tracing::field::Empty,
        event = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let response = accept_webhook(&s, &headers, &body)
        .instrument(span.clone())
        .await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    response
}

async fn accept_webhook(s: &WebhookState, headers: &HeaderMap, body: &Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "rejected",
            "content type must be application/json",
        );
    }
    let event = match s
        .verifier
        .verify(Signatures::from_headers(headers), body, s.clock.now())
    {
        Ok(e) => e,
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::warn!(error = %e, %status, "webhook refused");
            return answer(status, "rejected", e.to_string());
        }
    };
    tracing::Span::current().record("event", event.kind.type_name());
    let tenant = match s.tenants.by_location(&event.location).await {
        Ok(Some(t)) => {
            tracing::Span::current().record("tenant", t.id.as_str());
            t
        }
        Ok(None) => {
            // Not ours (yet): accepting it would lose nothing, refusing would make GHL retry
            // for an hour to no end.
            tracing::warn!(location = %event.location, kind = event.kind.type_name(), "webhook for a location with no tenant; ignored");
            return answer(StatusCode::OK, "ignored", "no tenant for this location");
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable; asking GHL to retry");
            return answer(StatusCode::TOO_MANY_REQUESTS, "retry", "cannot accept now");
        }
    };
    match &event.kind {
        GhlEventKind::Uninstall { .. } => return uninstall(s, &tenant).await,
        GhlEventKind::Install { .. } => return install(s, &tenant).await,
        _ => {}
    }
    match s
        .inbox
        .seen(&tenant.id, INBOX_WEBHOOKS, &event.webhook_id)
        .await
    {
        Ok(true) => return answer(StatusCode::OK, "duplicate", "already accepted"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable; asking GHL to retry");
            return answer(StatusCode::TOO_MANY_REQUESTS, "retry", "cannot accept now");
        }
    }
    let env = Envelope::new(
        event.webhook_id.clone(),
        tenant.id.clone(),
        Payload::GhlEvent(event.clone()),
        s.clock.now(),
    );
    if let Err(e) = s.publisher.publish(&env).await {
        tracing::warn!(error = %e, webhook_id = %event.webhook_id, "broker did not confirm; asking GHL to retry");
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            "retry",
            "cannot accept durably now",
        );
    }
    // Published for good; remembering the id only saves a duplicate publish later.
    if let Err(e) = s
        .inbox
        .record(&tenant.id, INBOX_WEBHOOKS, &event.webhook_id)
        .await
    {
        tracing::warn!(error = %e, "could not record the webhook id; a redelivery will be deduped by the worker");
    }
    answer(StatusCode::OK, "accepted", "accepted")
}

async fn uninstall(s: &WebhookState, tenant: &Tenant) -> Response {
    let result = async {
        s.credentials.delete(&tenant.id, Provider::Ghl).await?;
        s.tenants.set_active(&tenant.id, false).await
    }
    .await;
    if let Some(g) = &s.ghl {
        g.forget_credentials(&tenant.id);
    }
    match result {
        Ok(()) => {
            tracing::warn!(tenant = %tenant.id, "app uninstalled from the location: tenant deactivated and its GHL tokens deleted");
            answer(StatusCode::OK, "accepted", "uninstalled")
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record the uninstall; asking GHL to retry");
            answer(StatusCode::TOO_MANY_REQUESTS, "retry", "cannot accept now")
        }
    }
}

async fn install(s: &WebhookState, tenant: &Tenant) -> Response {
    if let Some(g) = &s.ghl {
        g.forget_credentials(&tenant.id);
    }
    match s.tenants.set_active(&tenant.id, true).await {
        Ok(()) => {
            tracing::info!(tenant = %tenant.id, "app installed on the location: tenant active (tokens arrive through the OAuth callback)");
            answer(StatusCode::OK, "accepted", "installed")
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record the install; asking GHL to retry");
            answer(StatusCode::TOO_MANY_REQUESTS, "retry", "cannot accept now")
        }
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn page(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn oauth_callback(State(s): State<OAuthState>, Query(q): Query<CallbackQuery>) -> Response {
    if let Some(e) = q.error {
        return page(
            StatusCode::BAD_REQUEST,
            format!("GHL refused the installation: {e}"),
        );
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "missing code or state: start the installation from `ghl-ekyte-sync oauth url --tenant …`".into(),
        );
    };
    let tenant_id = match s.signer.verify(&state, chrono::Utc::now()) {
        Ok(t) => t,
        Err(e) => return page(StatusCode::BAD_REQUEST, format!("invalid state: {e}")),
    };
    match complete_install(&s, &tenant_id, &code).await {
        Ok(msg) => page(StatusCode::OK, msg),
        Err((status, msg)) => page(status, msg),
    }
}

/// Exchange the code and store the tokens for the tenant (also `oauth exchange`).
pub async fn complete_install(
    s: &OAuthState,
    tenant_id: &TenantId,
    code: &str,
) -> Result<String, (StatusCode, String)> {
    let tenant = s.tenants.get(tenant_id).await.map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("tenant {tenant_id} is unknown ({e}); add it with `ghl-ekyte-sync tenants add` first"),
        )
    })?;
    let install = s.oauth.exchange_code(code).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("the code exchange with GHL failed: {e}"),
        )
    })?;
    if let Some(loc) = &install.location_id
        && loc != &tenant.location_id
    {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "the app was installed on location {loc}, but tenant {tenant_id} is for location {}; install it on the right sub-account",
                tenant.location_id
            ),
        ));
    }
    s.credentials
        .put(&tenant.id, Provider::Ghl, &install.credential)
        .await
        .map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not store the tokens: {e}"),
            )
        })?;
    s.tenants.set_active(&tenant.id, true).await.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not activate the tenant: {e}"),
        )
    })?;
    if let Some(g) = &s.ghl {
        g.forget_credentials(&tenant.id);
    }
    tracing::info!(tenant = %tenant.id, scopes = ?install.scopes, "GHL installation stored");
    Ok(format!(
        "Installed: tenant {} is connected to GHL location {}. You can close this page.",
        tenant.id, tenant.location_id
    ))
}

async fn readyz(State(s): State<HealthState>) -> Response {
    let store = s.store.ping().await;
    let broker = (s.broker_ready)();
    let body = serde_json::json!({
        "store": store.as_ref().map(|_| "ok").unwrap_or("unavailable"),
        "broker": if broker { "ok" } else { "unavailable" },
    });
    let status = if store.is_ok() && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_page(State(s): State<HealthState>) -> Response {
    let text = s.telemetry.render().await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}
