//! Errors: the adapter's set-up errors, and the one translation of what GHL answered into the
//! port's [`ApiError`] contract.
//!
//! Guarantees:
//! - every failed call is classified exactly once, in `CallError::into_api_error` (through
//!   `From<CallError> for ApiError`); callers never look at strings to decide anything;
//! - causes are kept: a timeout keeps its `reqwest::Error`, a 5xx keeps GHL's status and
//!   message as a [`GhlHttpError`] source, a body we cannot read keeps the `serde_json` error;
//! - GHL's error bodies are read leniently (API.md §2): `message` may be a string (400/401),
//!   an array (422) or absent; the v3 AIP envelope `{error: {message}}` is understood too.

use std::fmt;
use std::time::Duration;

use ports::ApiError;
use reqwest::StatusCode;
use serde_json::Value;

/// Why the adapter (or one of its parts) could not be built. Named after the config field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("ghl.{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },

    #[error("building the HTTP client for GHL")]
    HttpClient(#[source] reqwest::Error),

    #[error("webhook key {which} cannot be read: {message}")]
    Key { which: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// GHL's status and message, kept as the cause of a `Transient` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhlHttpError {
    pub status: u16,
    pub messages: Vec<String>,
}

impl fmt::Display for GhlHttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.messages.join("; "))
    }
}

impl std::error::Error for GhlHttpError {}

/// An error body as GHL sends it (API.md §2): `{statusCode, message, error, meta}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub message: Option<Value>,
    pub error: Option<Value>,
    pub meta: Option<Value>,
}

impl ErrorBody {
    /// Read whatever came back; a body that is not JSON keeps its first characters as the
    /// message (a proxy's HTML page is worth seeing in the dead-letter record).
    pub fn parse(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Self {
                message: m.get("message").cloned(),
                error: m.get("error").cloned(),
                meta: m.get("meta").cloned(),
            },
            Ok(other) => Self {
                message: Some(other),
                ..Self::default()
            },
            Err(_) => {
                let text = String::from_utf8_lossy(bytes);
                let text: String = text.trim().chars().take(200).collect();
                Self {
                    message: (!text.is_empty()).then_some(Value::String(text)),
                    ..Self::default()
                }
            }
        }
    }

    /// GHL's messages, whatever their shape (string for 400/401, array for 422).
    pub fn messages(&self) -> Vec<String> {
        fn flatten(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Null => {}
                Value::String(s) => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
                // The v3 AIP envelope: {error: {code, message, …}} (API.md §2).
                Value::Object(m) => match m.get("message") {
                    Some(inner) => flatten(inner, out),
                    None => out.push(v.to_string()),
                },
                other => out.push(other.to_string()),
            }
        }
        let mut out = Vec::new();
        if let Some(m) = &self.message {
            flatten(m, &mut out);
        }
        if out.is_empty()
            && let Some(e) = &self.error
        {
            flatten(e, &mut out);
        }
        out
    }

    /// `meta.contactId` of the duplicate-contact refusal (API.md §2, §6).
    pub fn existing_contact_id(&self) -> Option<String> {
        self.meta
            .as_ref()?
            .get("contactId")?
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    fn mentions(&self, needle: &str) -> bool {
        self.messages()
            .iter()
            .any(|m| m.to_ascii_lowercase().contains(needle))
    }

    /// "…not found" on a 400: the v2 specs declare no 404 for id-addressed routes, only
    /// `BadRequestDTO` (API.md §2, \[C2\] responses), so GHL reports a missing record this way.
    pub fn says_not_found(&self) -> bool {
        self.mentions("not found")
    }

    /// A token that lacks a scope ("The token is not authorized for this scope", sent with 401
    /// or 403): refreshing would not help.
    pub fn says_scope(&self) -> bool {
        self.mentions("scope")
    }

    /// The scope GHL names, when it names one ("…for this scope: contacts.write").
    pub fn named_scope(&self) -> Option<String> {
        self.messages().iter().find_map(|m| named_scope(m))
    }
}

/// The token after "scope:" / "scopes:" / "scope(s):", if any.
fn named_scope(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("scope") {
        let after = from + i + "scope".len();
        let tail = &message[after..];
        // Allow "s", "(s)" and spaces between the word and the colon.
        let colon = tail
            .char_indices()
            .take_while(|(_, c)| matches!(c, 's' | '(' | ')' | ' ' | ':'))
            .find(|(_, c)| *c == ':')
            .map(|(j, _)| j);
        if let Some(j) = colon {
            let scope: String = tail[j + 1..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '_' | '-'))
                .collect();
            let scope = scope.trim_end_matches('.');
            if !scope.is_empty() {
                return Some(scope.to_owned());
            }
        }
        from = after;
    }
    None
}

/// How a failed call ended, before classification. Only `client.rs` builds these.
#[derive(Debug)]
pub(crate) enum CallError {
    /// GHL answered with a definite error status (4xx other than 429, or a 5xx that the
    /// policy did not retry further on an idempotent request).
    Status {
        route: &'static str,
        status: StatusCode,
        body: Box<ErrorBody>,
        /// The documented scope of the route (API.md §4), named in 403 messages.
        scope: &'static str,
        /// An earlier attempt of this call may have taken effect (a retried DELETE that now
        /// answers "not found" did its job).
        after_unknown: bool,
    },
    /// 429s outlasted the bounded backoff.
    RateLimited { retry_after: Option<Duration> },
    /// The request may or may not have taken effect: a 5xx, a timeout or a broken connection
    /// on a request that is not retried blindly (or whose retries ran out).
    OutcomeUnknown { route: &'static str, cause: Unknown },
    /// Nothing reached GHL (connection refused, DNS): a failure that may pass.
    NotSent {
        route: &'static str,
        source: reqwest::Error,
    },
    /// A 2xx whose body we cannot read.
    Decode {
        route: &'static str,
        source: anyhow::Error,
    },
    /// Already classified (credentials, budget, request building).
    Api(ApiError),
}

/// What made an outcome unknown.
#[derive(Debug)]
pub(crate) enum Unknown {
    Status(GhlHttpError),
    Transport(reqwest::Error),
}

impl CallError {
    /// Whether GHL may have carried the request out although we got no answer.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. })
    }

    /// A definite "not found" (HTTP 404, or 400 "… not found").
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Status { status, body, .. } => {
                *status == StatusCode::NOT_FOUND
                    || (*status == StatusCode::BAD_REQUEST && body.says_not_found())
            }
            Self::Api(e) => e.is_not_found(),
            _ => false,
        }
    }

    /// Whether an earlier attempt of the call had an unknown outcome.
    pub fn after_unknown(&self) -> bool {
        matches!(
            self,
            Self::Status {
                after_unknown: true,
                ..
            }
        )
    }

    /// The one classification of a failed call (DESIGN.md §4, ports error contract).
    pub fn into_api_error(self) -> ApiError {
        match self {
            Self::Status {
                route,
                status,
                body,
                scope,
                ..
            } => classify_status(route, status, &body, scope),
            Self::RateLimited { retry_after, .. } => ApiError::RateLimited { retry_after },
            Self::OutcomeUnknown {
                route,
                cause: Unknown::Status(e),
            } => ApiError::Transient {
                message: format!("{route}: GHL answered {}", e.status),
                source: Some(Box::new(e)),
            },
            Self::OutcomeUnknown {
                route,
                cause: Unknown::Transport(e),
            } => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed in transit"
                };
                ApiError::transient(format!("{route}: the request {what}"), e)
            }
            Self::NotSent { route, source } => {
                ApiError::transient(format!("{route}: could not reach GHL"), source)
            }
            Self::Decode { route, source } => ApiError::Unknown(
                source.context(format!("{route}: GHL answered with a body we cannot read")),
            ),
            Self::Api(e) => e,
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        e.into_api_error()
    }
}

fn classify_status(
    route: &'static str,
    status: StatusCode,
    body: &ErrorBody,
    scope: &'static str,
) -> ApiError {
    let mut messages = body.messages();
    if messages.is_empty() {
        messages.push(format!("HTTP {}", status.as_u16()));
    }
    let joined = messages.join("; ");
    match status.as_u16() {
        404 => ApiError::not_found(format!("{route}: {joined}")),
        400 if body.existing_contact_id().is_some() => ApiError::Conflict {
            message: joined,
            existing_id: body.existing_contact_id(),
        },
        400 if body.says_not_found() => ApiError::not_found(format!("{route}: {joined}")),
        401 | 403 if status == StatusCode::FORBIDDEN || body.says_scope() => {
            let missing_scope = body.named_scope();
            let hint = match &missing_scope {
                Some(_) => String::new(),
                // "The token does not have access to this location.": a scope is not the cause.
                None if body.mentions("location") && !body.says_scope() => {
                    " (the record is not in the token's location: check the tenant's GHL location id)"
                        .to_owned()
                }
                None => format!(" (this route needs {scope}, API.md §4)"),
            };
            ApiError::Forbidden {
                message: format!("{route}: {joined}{hint}"),
                missing_scope,
            }
        }
        401 => ApiError::Unauthorized {
            message: format!("{route}: {joined}"),
        },
        409 => ApiError::Conflict {
            message: joined,
            existing_id: None,
        },
        400..=499 => ApiError::Invalid { messages },
        _ => ApiError::Transient {
            message: format!("{route}: GHL answered {}", status.as_u16()),
            source: Some(Box::new(GhlHttpError {
                status: status.as_u16(),
                messages,
            })),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(code: u16, body: Value) -> ApiError {
        CallError::Status {
            route: "GET /x",
            status: StatusCode::from_u16(code).unwrap(),
            body: Box::new(ErrorBody::parse(body.to_string().as_bytes())),
            scope: "contacts.readonly",
            after_unknown: false,
        }
        .into()
    }

    #[test]
    fn messages_come_as_string_or_array() {
        let one = ErrorBody::parse(br#"{"statusCode":400,"message":"bad"}"#);
        assert_eq!(one.messages(), vec!["bad"]);
        let many = ErrorBody::parse(
            br#"{"statusCode":422,"message":["a should not exist","b must be a string"],"error":"Unprocessable Entity"}"#,
        );
        assert_eq!(
            many.messages(),
            vec!["a should not exist", "b must be a string"]
        );
        let aip = ErrorBody::parse(br#"{"error":{"code":"RESOURCE_NOT_FOUND","message":"gone"}}"#);
        assert_eq!(aip.messages(), vec!["gone"]);
        let html = ErrorBody::parse(b"<html>502 Bad Gateway</html>");
        assert_eq!(html.messages(), vec!["<html>502 Bad Gateway</html>"]);
    }

    #[test]
    fn statuses_map_onto_the_port_contract() {
        assert!(status(404, json!({"message": "x"})).is_not_found());
        assert!(status(400, json!({"message": "Contact not found"})).is_not_found());
        match status(
            400,
            json!({"statusCode": 400, "message": "This location does not allow duplicated contacts.",
                   "meta": {"contactId": "abc", "matchingField": "email"}}),
        ) {
            ApiError::Conflict { existing_id, .. } => {
                assert_eq!(existing_id.as_deref(), Some("abc"))
            }
            other => panic!("{other:?}"),
        }
        match status(422, json!({"message": ["p should not exist"]})) {
            ApiError::Invalid { messages } => assert_eq!(messages, vec!["p should not exist"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            status(
                401,
                json!({"message": "Invalid token: access token is invalid"})
            ),
            ApiError::Unauthorized { .. }
        ));
        assert!(matches!(status(502, json!({})), ApiError::Transient { .. }));
    }

    #[test]
    fn forbidden_names_the_scope_when_ghl_does() {
        match status(
            403,
            json!({"message": "The token is not authorized for this scope: contacts.write"}),
        ) {
            ApiError::Forbidden { missing_scope, .. } => {
                assert_eq!(missing_scope.as_deref(), Some("contacts.write"))
            }
            other => panic!("{other:?}"),
        }
        // GHL's usual wording names no scope, and comes with a 401.
        match status(
            401,
            json!({"message": "The token is not authorized for this scope."}),
        ) {
            ApiError::Forbidden {
                missing_scope,
                message,
            } => {
                assert_eq!(missing_scope, None);
                assert!(message.contains("contacts.readonly"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Another location's record: no scope to blame.
        match status(
            403,
            json!({"statusCode": 403, "message": "The token does not have access to this location.", "error": "Forbidden"}),
        ) {
            ApiError::Forbidden {
                missing_scope,
                message,
            } => {
                assert_eq!(missing_scope, None);
                assert!(message.contains("not in the token's location"), "{message}");
                assert!(!message.contains("needs"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            named_scope("Missing scope(s): locations/tasks.readonly."),
            Some("locations/tasks.readonly".to_owned())
        );
        assert_eq!(named_scope("no scope here"), None);
    }

    #[test]
    fn causes_are_kept() {
        let e: ApiError = CallError::OutcomeUnknown {
            route: "POST /contacts/",
            cause: Unknown::Status(GhlHttpError {
                status: 503,
                messages: vec!["Service Unavailable".into()],
            }),
        }
        .into();
        let source = std::error::Error::source(&e).expect("cause");
        assert_eq!(source.to_string(), "HTTP 503: Service Unavailable");
    }
}
