//! GHL error answers, shaped as API.md §2 (the `common-schemas.json` DTOs).
//!
//! The same type is the error of the Rust control handle, so a test that seeds bad data sees
//! the status and body the HTTP API would have given.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer: HTTP status plus the exact JSON body GHL would send.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.body)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// `BadRequestDTO`: `{statusCode: 400, message}`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({"statusCode": 400, "message": message.into()}),
        }
    }

    /// `UnauthorizedDTO`: `{statusCode: 401, message, error: "Unauthorized"}`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: json!({"statusCode": 401, "message": message.into(), "error": "Unauthorized"}),
        }
    }

    /// The documented 401 for a missing, unknown or expired token (API.md §2).
    pub fn invalid_token() -> Self {
        Self::unauthorized("Invalid token: access token is invalid")
    }

    /// v3 `ForbiddenDTO` shape (the v2 specs declare no 403 body).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            body: json!({"statusCode": 403, "message": message.into(), "error": "Forbidden"}),
        }
    }

    /// A token used on a location it is not bound to.
    pub fn wrong_location() -> Self {
        Self::forbidden("The token does not have access to this location.")
    }

    /// `UnprocessableDTO`: `message` is an array of strings (API.md §2).
    pub fn unprocessable(messages: Vec<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "statusCode": 422,
                "message": messages,
                "error": "Unprocessable Entity",
            }),
        }
    }

    /// A record that does not exist (or is not visible). GHL's v2 specs declare 400 with
    /// `BadRequestDTO` and no 404 for id-addressed routes, so that is what the simulator sends.
    pub fn not_found(what: &str) -> Self {
        Self::bad_request(format!("{what} not found"))
    }

    /// The duplicate-contact refusal of API.md §2 / §6, with `meta.contactId`.
    pub fn duplicate_contact(contact_id: &str, matching_field: &str, name: Option<&str>) -> Self {
        let mut meta = json!({"contactId": contact_id, "matchingField": matching_field});
        if let Some(name) = name {
            meta["contactName"] = json!(name);
        }
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "statusCode": 400,
                "message": "This location does not allow duplicated contacts.",
                "meta": meta,
            }),
        }
    }

    /// 429. The body is not documented (API.md §2, §13); this mirrors the other DTOs.
    pub fn too_many_requests() -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({"statusCode": 429, "message": "Too Many Requests"}),
        }
    }

    /// An injected server error.
    pub fn server_error(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = status.canonical_reason().unwrap_or("Internal Server Error");
        Self {
            status,
            body: json!({"statusCode": status.as_u16(), "message": message}),
        }
    }

    /// The NestJS answer to a path no controller serves.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: json!({
                "statusCode": 404,
                "message": format!("Cannot {method} {path}"),
                "error": "Not Found",
            }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Shorthand for handlers and store operations.
pub type ApiResult<T> = Result<T, ApiError>;
