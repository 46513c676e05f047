//! A client of eKyte's official MCP endpoint (API.md §5): JSON-RPC 2.0 over HTTP POST to
//! `/mcp?token=…`, answers as plain JSON or as SSE `data:` lines.
//!
//! Guarantees:
//! - one session per tenant and token: `initialize`, `notifications/initialized`, then
//!   `get_current_user`; the session (its `Mcp-Session-Id`, when the server gives one) and the
//!   identity are cached and reused until the stored token changes;
//! - **no tool is called before the token's identity is known to be a real user**: eKyte
//!   serves a malformed token as an anonymous caller without error (API.md §2.2), so an
//!   anonymous identity fails with `Unauthorized` and nothing is written; that verdict is
//!   cached per token, so a bad token costs three requests once, not on every call;
//! - a session the server has forgotten (HTTP 404 with a session id) is opened again once;
//! - tool refusals (`isError: true`) come back as [`ToolOutput::Refused`] with eKyte's text,
//!   for the caller to classify; JSON-RPC errors become port errors by code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use domain::TenantId;
use ports::ApiError;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::{Calls, Http, Request, Response, excerpt, status_error};
use crate::config::EkyteConfig;
use crate::dto::CurrentUserDto;
use crate::error::scrub;
use crate::mapping::{self, McpIdentity};

/// What a tool call produced.
#[derive(Debug)]
pub(crate) enum ToolOutput {
    /// The tool's JSON (the text content parsed; a string when it is not JSON).
    Value(Value),
    /// The tool refused (`isError: true`), with eKyte's text.
    Refused(String),
}

#[derive(Debug)]
struct Session {
    digest: [u8; 32],
    id: Option<String>,
    protocol: String,
    identity: McpIdentity,
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    Ready(Arc<Session>),
    /// The token resolved to an anonymous identity; kept so it is not asked again.
    Refused {
        digest: [u8; 32],
        message: String,
    },
}

pub(crate) enum RpcError {
    /// HTTP 404 on a request that carried a session id: the server forgot the session.
    SessionGone,
    Api(ApiError),
}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

pub(crate) struct Mcp {
    path: String,
    protocol: String,
    slots: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<Slot>>>>,
    next_id: AtomicU64,
}

fn digest(token: &SecretString) -> [u8; 32] {
    Sha256::digest(token.expose_secret().as_bytes()).into()
}

impl Mcp {
    pub fn new(config: &EkyteConfig) -> Self {
        Self {
            path: config.mcp_path.trim_start_matches('/').to_owned(),
            protocol: config.mcp_protocol_version.clone(),
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// The identity behind the tenant's token (opening the session if needed).
    pub async fn identity(
        &self,
        http: &Http,
        calls: &Calls,
        tenant: &TenantId,
        token: &SecretString,
    ) -> Result<McpIdentity, ApiError> {
        let session = self.session(http, calls, tenant, token).await?;
        Ok(session.identity.clone())
    }

    /// Call one tool. `idempotent` says whether the request may be sent again on 429/5xx.
    #[allow(clippy::too_many_arguments)]
    pub async fn tool(
        &self,
        http: &Http,
        calls: &Calls,
        tenant: &TenantId,
        token: &SecretString,
        name: &str,
        arguments: Value,
        idempotent: bool,
    ) -> Result<ToolOutput, ApiError> {
        let params = json!({ "name": name, "arguments": arguments });
        for round in 0..2 {
            let session = self.session(http, calls, tenant, token).await?;
            let route = format!("MCP tools/call {name}");
            match self
                .rpc(
                    http,
                    calls,
                    token,
                    Some(&session),
                    "tools/call",
                    &params,
                    &route,
                    idempotent,
                )
                .await
            {
                Ok(result) => return Ok(tool_output(&result, token)),
                Err(RpcError::SessionGone) if round == 0 => {
                    tracing::debug!(tool = name, "eKyte MCP session expired; opening a new one");
                    self.forget(tenant, &session).await;
                }
                Err(RpcError::SessionGone) => break,
                Err(RpcError::Api(e)) => return Err(e),
            }
        }
        Err(ApiError::Unknown(anyhow::anyhow!(
            "eKyte MCP forgot the session twice in a row while calling {name}"
        )))
    }

    fn slot(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut map = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(tenant.clone()).or_default().clone()
    }

    async fn forget(&self, tenant: &TenantId, session: &Arc<Session>) {
        let slot = self.slot(tenant);
        let mut guard = slot.lock().await;
        if matches!(&*guard, Slot::Ready(s) if Arc::ptr_eq(s, session)) {
            *guard = Slot::Empty;
        }
    }

    async fn session(
        &self,
        http: &Http,
        calls: &Calls,
        tenant: &TenantId,
        token: &SecretString,
    ) -> Result<Arc<Session>, ApiError> {
        let digest = digest(token);
        let slot = self.slot(tenant);
        // Held while opening, so concurrent callers of one tenant open one session.
        let mut guard = slot.lock().await;
        match &*guard {
            Slot::Ready(s) if s.digest == digest => return Ok(s.clone()),
            Slot::Refused { digest: d, message } if *d == digest => {
                // The next operation reads the store again: the token may be corrected.
                http.forget_credentials(tenant.as_str());
                return Err(ApiError::Unauthorized {
                    message: message.clone(),
                });
            }
            _ => {}
        }
        let opened = self.open(http, calls, token, digest).await;
        match opened {
            Ok(session) => {
                let session = Arc::new(session);
                tracing::info!(tenant = %tenant, user = %session.identity.email, "eKyte MCP session opened");
                *guard = Slot::Ready(session.clone());
                Ok(session)
            }
            Err(Opened::Anonymous(why)) => {
                let message = format!(
                    "the eKyte MCP token of tenant {tenant} resolves to an anonymous identity \
                     ({why}); eKyte serves a malformed token that way without error, so nothing \
                     was written. Store only the personal token (64 hex characters from eKyte → \
                     Configurações → Token de Acesso para MCP), not the whole URL"
                );
                tracing::warn!(tenant = %tenant, "eKyte MCP token is anonymous; refusing to write");
                http.forget_credentials(tenant.as_str());
                *guard = Slot::Refused {
                    digest,
                    message: message.clone(),
                };
                Err(ApiError::Unauthorized { message })
            }
            Err(Opened::Failed(e)) => Err(e),
        }
    }

    async fn open(
        &self,
        http: &Http,
        calls: &Calls,
        token: &SecretString,
        digest: [u8; 32],
    ) -> Result<Session, Opened> {
        let init = json!({
            "protocolVersion": self.protocol,
            "capabilities": {},
            "clientInfo": { "name": "ghl-ekyte-sync", "version": env!("CARGO_PKG_VERSION") },
        });
        let (result, session_id) = self
            .rpc_with_headers(
                http,
                calls,
                token,
                None,
                "initialize",
                &init,
                "MCP initialize",
            )
            .await
            .map_err(Opened::from_rpc)?;
        let protocol = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(&self.protocol)
            .to_owned();
        let mut session = Session {
            digest,
            id: session_id,
            protocol,
            identity: McpIdentity {
                user_id: String::new(),
                email: String::new(),
                name: None,
            },
        };
        self.notify(http, calls, token, &session, "notifications/initialized")
            .await
            .map_err(Opened::from_rpc)?;
        let params = json!({ "name": "get_current_user", "arguments": {} });
        let result = self
            .rpc(
                http,
                calls,
                token,
                Some(&session),
                "tools/call",
                &params,
                "MCP tools/call get_current_user",
                true,
            )
            .await
            .map_err(Opened::from_rpc)?;
        let user = match tool_output(&result, token) {
            ToolOutput::Value(v) => CurrentUserDto::read(&v).unwrap_or_default(),
            ToolOutput::Refused(text) => {
                return Err(Opened::Anonymous(format!(
                    "get_current_user was refused: {text}"
                )));
            }
        };
        session.identity =
            mapping::identity(user).map_err(|why| Opened::Anonymous(why.to_owned()))?;
        Ok(session)
    }

    fn url(&self, http: &Http, token: &SecretString) -> Result<url::Url, ApiError> {
        let mut url = http.url(&self.path)?;
        url.query_pairs_mut()
            .append_pair("token", token.expose_secret());
        Ok(url)
    }

    fn headers(&self, session: Option<&Session>) -> Vec<(&'static str, String)> {
        // Streamable HTTP transport: the client accepts both answer forms (API.md §5).
        let mut h = vec![("accept", "application/json, text/event-stream".to_owned())];
        if let Some(s) = session {
            if let Some(id) = &s.id {
                h.push(("mcp-session-id", id.clone()));
            }
            h.push(("mcp-protocol-version", s.protocol.clone()));
        }
        h
    }

    async fn notify(
        &self,
        http: &Http,
        calls: &Calls,
        token: &SecretString,
        session: &Session,
        method: &str,
    ) -> Result<(), RpcError> {
        let body = json!({ "jsonrpc": "2.0", "method": method });
        let req = Request {
            method: Method::POST,
            route: format!("MCP {method}"),
            url: self.url(http, token)?,
            body: Some(&body),
            headers: self.headers(Some(session)),
            secrets: vec![token],
            idempotent: true,
        };
        let resp = http.send(calls, &req).await?;
        if resp.status.is_success() {
            return Ok(());
        }
        Err(http_error(&req, &resp, session.id.is_some()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn rpc(
        &self,
        http: &Http,
        calls: &Calls,
        token: &SecretString,
        session: Option<&Session>,
        method: &str,
        params: &Value,
        route: &str,
        idempotent: bool,
    ) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let req = Request {
            method: Method::POST,
            route: route.to_owned(),
            url: self.url(http, token)?,
            body: Some(&body),
            headers: self.headers(session),
            secrets: vec![token],
            idempotent,
        };
        let resp = http.send(calls, &req).await?;
        if !resp.status.is_success() {
            return Err(http_error(
                &req,
                &resp,
                session.is_some_and(|s| s.id.is_some()),
            ));
        }
        Ok(answer(&req, &resp, id)?)
    }

    /// `initialize`: like [`Self::rpc`], also returning the `Mcp-Session-Id` header.
    #[allow(clippy::too_many_arguments)]
    async fn rpc_with_headers(
        &self,
        http: &Http,
        calls: &Calls,
        token: &SecretString,
        session: Option<&Session>,
        method: &str,
        params: &Value,
        route: &str,
    ) -> Result<(Value, Option<String>), RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let req = Request {
            method: Method::POST,
            route: route.to_owned(),
            url: self.url(http, token)?,
            body: Some(&body),
            headers: self.headers(session),
            secrets: vec![token],
            idempotent: true,
        };
        let resp = http.send(calls, &req).await?;
        if !resp.status.is_success() {
            return Err(http_error(&req, &resp, false));
        }
        let session_id = resp
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((answer(&req, &resp, id)?, session_id))
    }
}

enum Opened {
    Anonymous(String),
    Failed(ApiError),
}

impl Opened {
    fn from_rpc(e: RpcError) -> Self {
        match e {
            RpcError::Api(e) => Self::Failed(e),
            RpcError::SessionGone => Self::Failed(ApiError::Unknown(anyhow::anyhow!(
                "eKyte MCP forgot the session while it was being opened"
            ))),
        }
    }
}

pub(crate) fn http_error(req: &Request<'_>, resp: &Response, had_session: bool) -> RpcError {
    let text = rpc_error_text(&resp.body)
        .map(|t| scrub(&t, &req.secrets))
        .unwrap_or_else(|| excerpt(&scrub(&resp.body, &req.secrets)));
    match resp.status {
        StatusCode::NOT_FOUND if had_session => RpcError::SessionGone,
        StatusCode::UNAUTHORIZED => RpcError::Api(ApiError::Unauthorized {
            message: format!(
                "eKyte refused the MCP token (HTTP 401 on {}): {text}; generate a new personal token",
                req.route
            ),
        }),
        status => RpcError::Api(status_error(req, status, text)),
    }
}

fn rpc_error_text(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("error")?.get("message")?.as_str().map(str::to_owned)
}

/// The JSON-RPC response with `id` in a plain JSON or SSE answer; its `result`, or the error
/// it carries as a port error.
pub(crate) fn answer(req: &Request<'_>, resp: &Response, id: u64) -> Result<Value, ApiError> {
    let messages = if resp.content_type().contains("text/event-stream")
        || (!resp.body.trim_start().starts_with(['{', '[']) && resp.body.contains("data:"))
    {
        sse_messages(&resp.body)
    } else {
        match serde_json::from_str::<Value>(&resp.body) {
            Ok(Value::Array(batch)) => batch,
            Ok(one) => vec![one],
            Err(e) => {
                return Err(ApiError::Unknown(crate::error::shape_error(&e).context(
                    format!(
                        "{} answered with a body that is neither JSON nor SSE",
                        req.route
                    ),
                )));
            }
        }
    };
    // Our response: our id (a number, or its text if the server stringifies ids) and no
    // `method` (a server-to-client request may reuse the number).
    let ours = |m: &Value| {
        let same = match m.get("id") {
            Some(Value::Number(n)) => n.as_u64() == Some(id),
            Some(Value::String(s)) => s.trim() == id.to_string(),
            _ => false,
        };
        same && m.get("method").is_none()
    };
    let message = messages.into_iter().find(ours).ok_or_else(|| {
        ApiError::Unknown(anyhow::anyhow!(
            "{} answered without a response to request {id}",
            req.route
        ))
    })?;
    if let Some(err) = message.get("error") {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let text = scrub(
            err.get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)"),
            &req.secrets,
        );
        return Err(match code {
            // JSON-RPC 2.0: parse error, invalid request, invalid params.
            -32700 | -32600 | -32602 => ApiError::Invalid {
                messages: vec![text],
            },
            _ => ApiError::Unknown(anyhow::anyhow!(
                "{} failed with JSON-RPC error {code}: {text}",
                req.route
            )),
        });
    }
    Ok(message.get("result").cloned().unwrap_or(Value::Null))
}

/// The JSON messages of an SSE stream: each event's `data:` lines joined by `\n`. Events that
/// are not JSON (keep-alives, comments) are skipped.
pub(crate) fn sse_messages(body: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    let mut flush = |data: &mut Vec<&str>| {
        if !data.is_empty() {
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                match v {
                    Value::Array(batch) => out.extend(batch),
                    one => out.push(one),
                }
            }
            data.clear();
        }
    };
    for line in body.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            flush(&mut data);
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest));
        }
        // `event:`, `id:`, `retry:` and `:` comments carry nothing we need.
    }
    flush(&mut data);
    out
}

/// A `tools/call` result: `isError` → refused; otherwise `structuredContent` when given, else
/// the first text content parsed as JSON (API.md §5: tool results are JSON in
/// `result.content[].text`).
pub(crate) fn tool_output(result: &Value, token: &SecretString) -> ToolOutput {
    let text = result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "text")
        })
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text = if text.trim().is_empty() {
            "(no message)".to_owned()
        } else {
            scrub(&text, &[token])
        };
        return ToolOutput::Refused(text);
    }
    if let Some(structured) = result.get("structuredContent").filter(|v| v.is_object()) {
        return ToolOutput::Value(structured.clone());
    }
    if text.trim().is_empty() {
        return ToolOutput::Value(Value::Null);
    }
    ToolOutput::Value(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_joined_and_non_json_skipped() {
        let body = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":3,\"result\":{}}\r\n\r\n: keep-alive\n\ndata:[{\"id\":4}]\n";
        let msgs = sse_messages(body);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0]["id"], 3);
        assert_eq!(msgs[1]["id"], 4);
    }

    #[test]
    fn the_answer_is_our_response_not_a_server_request_with_the_same_id() {
        let token = SecretString::from("secret-token-123");
        let req = Request {
            method: Method::POST,
            route: "MCP test".into(),
            url: url::Url::parse("http://127.0.0.1/mcp").unwrap(),
            body: None,
            headers: Vec::new(),
            secrets: vec![&token],
            idempotent: true,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("text/event-stream"),
        );
        let resp = Response {
            status: StatusCode::OK,
            headers,
            body: "data: {\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"sampling/createMessage\"}\n\n\
                   data: {\"jsonrpc\":\"2.0\",\"id\":\"4\",\"result\":{\"ok\":true}}\n\n"
                .into(),
        };
        assert_eq!(answer(&req, &resp, 4).unwrap(), json!({ "ok": true }));
        let err = Response {
            status: StatusCode::OK,
            headers: reqwest::header::HeaderMap::new(),
            body: "{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":-32603,\"message\":\"boom secret-token-123\"}}".into(),
        };
        let e = answer(&req, &err, 5).unwrap_err();
        assert!(matches!(e, ApiError::Unknown(_)));
        assert!(!e.to_string().contains("secret-token-123"), "{e}");
    }

    #[test]
    fn tool_results_parse_text_json_and_keep_refusals() {
        let token = SecretString::from("secret-token-123");
        let ok = json!({ "content": [{ "type": "text", "text": "{\"id\": 5}" }] });
        assert!(matches!(tool_output(&ok, &token), ToolOutput::Value(v) if v["id"] == 5));
        let refused = json!({ "content": [{ "type": "text", "text": "Tarefa não encontrada. secret-token-123" }], "isError": true });
        match tool_output(&refused, &token) {
            ToolOutput::Refused(t) => {
                assert!(t.starts_with("Tarefa não encontrada."));
                assert!(!t.contains("secret-token-123"));
            }
            other => panic!("{other:?}"),
        }
    }
}
