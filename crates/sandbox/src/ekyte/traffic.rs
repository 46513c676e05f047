//! The middleware in front of the three vendor surfaces: rate limits, injected faults and
//! request counters.
//!
//! Guarantees: a request refused here (earned or injected 429, injected 5xx, timeout) never
//! reaches a handler, so it changes no data; every request that reaches the layer is counted
//! under its matched route template (`GET /v1.2/tasks`) and final status. The control API is
//! mounted outside this layer and is never limited, faulted or counted.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::params::Params;
use super::state::Sim;
use crate::common::{FaultOutcome, RouteKey};

/// Which vendor surface a route belongs to; each has its own error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    Bi,
    Automation,
    Mcp,
}

impl Surface {
    pub fn of(route: &str) -> Self {
        if route.starts_with("/mcp") {
            Self::Mcp
        } else if route.starts_with("/n8n") || route.starts_with("/zapier") {
            Self::Automation
        } else {
            Self::Bi
        }
    }

    /// An error in the surface's own shape.
    pub fn error(self, status: u16, text: &str) -> Response {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match self {
            Self::Bi => (code, axum::Json(bi_error(status, text))).into_response(),
            // SRV: `{ "Id": <int>, "Text": "<message>" }`.
            Self::Automation => {
                (code, axum::Json(json!({ "Id": status, "Text": text }))).into_response()
            }
            Self::Mcp => (
                code,
                axum::Json(json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": { "code": -32000, "message": text },
                })),
            )
                .into_response(),
        }
    }
}

/// The BI envelope carrying an error (API.md §3.1). `code` is eKyte's internal code: for an
/// invalid key it is "404" on an HTTP 401 ([c:63156668550]); otherwise the HTTP status.
pub(crate) fn bi_error(status: u16, text: &str) -> serde_json::Value {
    let code = if status == 401 {
        "404".to_owned()
    } else {
        status.to_string()
    };
    json!({
        "error": {
            "id": uuid::Uuid::new_v4().to_string(),
            "message": text,
            "code": code,
            "details": null,
        },
        "data": null,
        "paging": null,
    })
}

pub(crate) async fn traffic(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let key = RouteKey::new(req.method().as_str(), route.clone());
    let surface = Surface::of(&route);

    let params = Params::parse(req.uri().query());
    let credential = params
        .get("apiKey")
        .or_else(|| params.get("token"))
        .unwrap_or_default()
        .to_owned();
    if !sim.limiter.admit(&credential) {
        sim.counters.bump("rate_limited_earned");
        sim.counters.record(key, 429);
        return surface.error(429, "Limite de requisições excedido.");
    }

    let decision = sim.faults.decide(&key);
    if !decision.delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(decision.delay) => {}
            () = sim.stop.cancelled() => {}
        }
    }
    match decision.outcome {
        FaultOutcome::Pass => {}
        FaultOutcome::ServerError(status) => {
            sim.counters.bump("fault_server_error");
            sim.counters.record(key, status);
            return surface.error(status, "Erro interno do servidor.");
        }
        FaultOutcome::RateLimited => {
            sim.counters.bump("rate_limited_injected");
            sim.counters.record(key, 429);
            return surface.error(429, "Limite de requisições excedido.");
        }
        FaultOutcome::Hang(wait) => {
            // Counted before waiting: the client usually gives up first and the answer is lost.
            sim.counters.bump("fault_timeout");
            sim.counters.record(key, 504);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = sim.stop.cancelled() => {}
            }
            return (
                StatusCode::GATEWAY_TIMEOUT,
                [(header::CONTENT_TYPE, "text/plain")],
                "Gateway Timeout",
            )
                .into_response();
        }
    }

    let response = next.run(req).await;
    sim.counters.record(key, response.status().as_u16());
    response
}
