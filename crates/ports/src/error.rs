//! The error contracts of the ports, and the one place errors are classified.
//!
//! Adapters translate what their drivers say (HTTP statuses, unique violations, broker nacks)
//! into these named cases. The worker decides retry / dead-letter / skip from the case alone,
//! through [`Classify`]; nothing matches on error strings.

use std::time::Duration;

/// A boxed cause, kept so the whole chain reaches the dead-letter record.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the worker does with a message whose handling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later (through the delay queues), after at least `after` when known.
    Retry { after: Option<Duration> },
    /// Another holder has the work in hand (a claim on the record to create) until at most
    /// `until`, when its claim turns stale and is ours to take over. Look again by then,
    /// without spending one of the message's attempts: the wait ends by itself, and a holder
    /// that died must not make the message give up first. Past `until`, a plain retry.
    Wait {
        until: chrono::DateTime<chrono::Utc>,
    },
    /// Never going to work as it is: park it in the dead-letter queue for a person.
    DeadLetter,
    /// Nothing to do (the entity is gone, the operation is not possible): ack and audit.
    Skip,
}

/// Errors that know their disposition.
pub trait Classify {
    fn disposition(&self) -> Disposition;
}

/// Errors of the vendor API ports (GHL and eKyte).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The record does not exist (HTTP 404, or an empty eKyte answer for an id).
    #[error("{what} was not found")]
    NotFound { what: String },

    /// The vendor asked us to slow down (HTTP 429) and retries inside the adapter ran out.
    #[error("rate limited by the vendor{}", .retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },

    /// The credentials are missing, expired beyond refresh, or revoked (HTTP 401,
    /// `invalid_grant`). The message says what to do (reinstall the app, set a new key).
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },

    /// The credentials are valid but lack a permission (HTTP 403; GHL names the scope).
    #[error("forbidden: {message}")]
    Forbidden {
        message: String,
        missing_scope: Option<String>,
    },

    /// The write clashes with an existing record (GHL's duplicate-contact rule); carries the
    /// existing record's id when the vendor names it.
    #[error("conflict: {message}")]
    Conflict {
        message: String,
        existing_id: Option<String>,
    },

    /// The vendor rejected the request as malformed (HTTP 400/422); its messages are kept.
    #[error("invalid request: {}", .messages.join("; "))]
    Invalid { messages: Vec<String> },

    /// A failure that may pass: 5xx, timeout, connection error.
    #[error("transient failure: {message}")]
    Transient {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The configured credentials do not allow this operation (eKyte without an MCP token
    /// cannot update). No request was sent.
    #[error("not supported with the configured credentials: {operation}")]
    Unsupported { operation: String },

    /// Anything else, with its cause chain.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn transient(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Transient {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    pub fn unsupported(operation: impl Into<String>) -> Self {
        Self::Unsupported {
            operation: operation.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

impl Classify for ApiError {
    fn disposition(&self) -> Disposition {
        match self {
            Self::NotFound { .. } | Self::Unsupported { .. } => Disposition::Skip,
            Self::RateLimited { retry_after } => Disposition::Retry {
                after: *retry_after,
            },
            Self::Transient { .. } | Self::Unknown(_) => Disposition::Retry { after: None },
            Self::Unauthorized { .. }
            | Self::Forbidden { .. }
            | Self::Conflict { .. }
            | Self::Invalid { .. } => Disposition::DeadLetter,
        }
    }
}

/// Errors of the store ports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} was not found")]
    NotFound { what: String },

    /// A uniqueness or version check failed: someone else wrote first.
    #[error("conflict: {message}")]
    Conflict { message: String },

    /// The database cannot be reached or timed out; worth retrying.
    #[error("database unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// A stored secret cannot be decrypted with the configured key (wrong key, or a key id
    /// that is not configured). Never retried: the configuration must change.
    #[error("cannot decrypt stored credentials: {message}")]
    Crypto { message: String },

    /// Stored data does not parse (a bug or a manual edit).
    #[error("stored data is invalid: {message}")]
    Corrupt { message: String },

    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl Classify for StoreError {
    fn disposition(&self) -> Disposition {
        match self {
            Self::Unavailable { .. } | Self::Conflict { .. } | Self::Unknown(_) => {
                Disposition::Retry { after: None }
            }
            Self::NotFound { .. } => Disposition::Skip,
            Self::Crypto { .. } | Self::Corrupt { .. } => Disposition::DeadLetter,
        }
    }
}

/// Errors of the message queue ports.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker cannot be reached, or the connection dropped.
    #[error("broker unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The broker refused the message (publisher confirm came back as a nack).
    #[error("broker refused the message: {message}")]
    Nacked { message: String },

    /// No confirm within the deadline.
    #[error("broker did not confirm within {0:?}")]
    ConfirmTimeout(Duration),

    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl Classify for QueueError {
    fn disposition(&self) -> Disposition {
        Disposition::Retry { after: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_case() {
        assert_eq!(
            ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
            .disposition(),
            Disposition::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            ApiError::Invalid {
                messages: vec!["x".into()]
            }
            .disposition(),
            Disposition::DeadLetter
        );
        assert_eq!(
            ApiError::unsupported("update").disposition(),
            Disposition::Skip
        );
        assert_eq!(
            StoreError::Crypto {
                message: "wrong key".into()
            }
            .disposition(),
            Disposition::DeadLetter
        );
    }

    #[test]
    fn causes_are_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
        let e = ApiError::transient("GET /contacts/x", io);
        let source = std::error::Error::source(&e).expect("cause kept");
        assert_eq!(source.to_string(), "read timed out");
    }
}
