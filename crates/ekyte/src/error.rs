//! How eKyte's failures become the port's error cases (ports/src/ekyte.rs, module doc), and
//! the one rule that keeps secrets out of them.
//!
//! Guarantees: every error this crate returns is an [`ApiError`] case chosen from structured
//! facts (HTTP status, JSON-RPC code, which envelope field was set), never from matching
//! eKyte's message text; eKyte's own text is kept in the message; and no message or cause
//! carries the API key or the MCP token — both travel in URLs (API.md §2), so transport errors
//! are stripped of their URL and any text taken from a response is scrubbed of both.

use ports::ApiError;
use ports::StoreError;
use secrecy::{ExposeSecret, SecretString};

/// Replace every occurrence of a secret in `text` with `***`.
/// A decoding error without the values serde quotes from the answer ("invalid type: string
/// \"…\""): an answer may echo the API key or hold a client's personal data, and this error
/// reaches logs and dead letters. What is kept — the kind of error and its position — is
/// what tells an operator which shape eKyte changed.
pub(crate) fn shape_error(e: &serde_json::Error) -> anyhow::Error {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => {
            "JSON of another shape (a field missing or of another type)"
        }
        serde_json::error::Category::Eof => "JSON cut short",
    };
    anyhow::anyhow!("{kind} at line {} column {}", e.line(), e.column())
}

pub(crate) fn scrub(text: &str, secrets: &[&SecretString]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        let raw = s.expose_secret();
        // Short values would blank out ordinary words; eKyte keys and tokens are long.
        if raw.len() >= 6 && out.contains(raw) {
            out = out.replace(raw, "***");
        }
        // The URL-encoded form, in case a server echoes the query string.
        let encoded: String = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect();
        if encoded != raw && encoded.len() >= 6 && out.contains(&encoded) {
            out = out.replace(&encoded, "***");
        }
    }
    out
}

/// A poll spent its request budget ([`crate::PollConfig::max_calls`]). Carried inside
/// `ApiError::Unknown` and recognised by downcast in the poller, which then stops early and
/// keeps its place for the next poll.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request budget of {0} calls for this operation is spent")]
pub(crate) struct BudgetSpent(pub u32);

impl BudgetSpent {
    pub fn is(err: &ApiError) -> bool {
        matches!(err, ApiError::Unknown(e) if e.downcast_ref::<BudgetSpent>().is_some())
    }
}

/// Whether a request that failed this way may be sent again (API.md §9: retries on 5xx;
/// 429 and timeouts alike).
pub(crate) fn is_retryable(err: &ApiError) -> bool {
    matches!(
        err,
        ApiError::RateLimited { .. } | ApiError::Transient { .. }
    ) && !BudgetSpent::is(err)
}

/// A store failure met while reading credentials or links.
pub(crate) fn from_store(err: StoreError, what: &str) -> ApiError {
    match err {
        StoreError::Unavailable { message, source } => ApiError::Transient {
            message: format!("{what}: store unavailable: {message}"),
            source,
        },
        other => ApiError::Unknown(anyhow::Error::new(other).context(what.to_owned())),
    }
}

/// A create failed in a way that may have created the record, and the lookup that should have
/// told failed too: the caller must not create again before looking the record up.
pub(crate) fn outcome_unknown(what: &str, create: ApiError, lookup: Option<ApiError>) -> ApiError {
    let message = match &lookup {
        Some(l) => format!(
            "{what}: the create failed ({create}) and may have succeeded; looking it up failed \
             too ({l}); look the record up before creating it again"
        ),
        None => format!(
            "{what}: the create failed ({create}) and may have succeeded; what eKyte shows \
             cannot tell whether it did (its reads carry no ExternalId), so the retry looks \
             among the records of this name that nothing links before creating again"
        ),
    };
    ApiError::Transient {
        message,
        source: Some(Box::new(create)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_raw_and_encoded() {
        let key = SecretString::from("k3y/with+chars==");
        let token = SecretString::from("0123456789abcdef");
        let text = "GET /v1.0/workspaces?apiKey=k3y%2Fwith%2Bchars%3D%3D&x=k3y/with+chars== \
                    token=0123456789abcdef";
        let out = scrub(text, &[&key, &token]);
        assert!(!out.contains("k3y"), "{out}");
        assert!(!out.contains("0123456789abcdef"), "{out}");
    }

    #[test]
    fn budget_is_recognised_by_type() {
        let e = ApiError::Unknown(anyhow::Error::new(BudgetSpent(3)));
        assert!(BudgetSpent::is(&e));
        assert!(!is_retryable(&e));
        assert!(!BudgetSpent::is(&ApiError::not_found("x")));
    }
}
