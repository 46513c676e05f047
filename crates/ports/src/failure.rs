//! The class of a failure: what groups dead letters and failed audit entries that share one
//! cause, whatever record or message each was about (`dlq list --summary`, `status`).
//!
//! A failure is recorded as its error chain, outermost first (`SyncError::chain` in the
//! engine): a dead letter keeps the chain as a list, a `failed` audit entry as its `reason`,
//! the same list joined with `": "`. [`error_class`] reads either the same way:
//!
//! 1. The chain is read as one text, `outer: inner: …`, split at each `": "`.
//! 2. A leading [`retries_exhausted`] part is left out when a cause follows it: it says how
//!    the message ended (the worker ran out of attempts), not why, and its number changes
//!    with the configuration.
//! 3. The first two parts that remain are kept. The outermost names what failed — the
//!    engine's errors carry a fixed operation (`GHL get contact failed`, `store claim link
//!    failed`) — and the next one names the port error's case, whose message starts with a
//!    fixed phrase before its detail (`unauthorized`, `transient failure`, `invalid request`,
//!    `database unavailable`, …; see `ports::error`). What follows (the vendor's message, a
//!    URL, a record id) differs from one record to the next and is dropped.
//! 4. What varies inside those two parts is masked: a word holding a digit (an id, a count,
//!    a duration) becomes `#`, a double-quoted string `"…"`.
//!
//! So `["gave up after 5 attempts", "eKyte create task failed", "transient failure: HTTP 503
//! from POST /tasks"]` and `"eKyte create task failed: transient failure: timed out"` are both
//! of class `eKyte create task failed: transient failure`. The class is a pure function of the
//! text, so it needs no stored column and applies to letters written before it existed.

/// The first line the worker puts in a dead letter's error chain when a message's retries ran
/// out (`attempts` is how many were made).
pub fn retries_exhausted(attempts: u32) -> String {
    format!("gave up after {attempts} attempts")
}

/// [`retries_exhausted`] after masking.
const RETRIES_EXHAUSTED_MASKED: &str = "gave up after # attempts";

/// The class of a failure without a recorded error (an audit entry with no reason).
pub const NO_ERROR_RECORDED: &str = "no error recorded";

/// Longest class kept, in characters; a longer one is cut and ends with `…`.
const MAX_CHARS: usize = 160;

/// The class of an error chain, outermost first (see the module doc). Pass a single joined
/// text (an audit entry's reason) as a one-element slice.
pub fn error_class<S: AsRef<str>>(chain: &[S]) -> String {
    let joined = chain
        .iter()
        .map(|s| s.as_ref().trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let mut parts: Vec<String> = joined
        .split(": ")
        .map(mask)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > 1 && parts[0] == RETRIES_EXHAUSTED_MASKED {
        parts.remove(0);
    }
    parts.truncate(2);
    let class = parts.join(": ");
    if class.is_empty() {
        return NO_ERROR_RECORDED.to_owned();
    }
    if class.chars().count() > MAX_CHARS {
        let mut cut: String = class.chars().take(MAX_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        class
    }
}

/// Mask the volatile pieces of one part: quoted strings, then words holding a digit. Spaces
/// are collapsed.
fn mask(part: &str) -> String {
    let mut unquoted = String::with_capacity(part.len());
    let mut in_quote = false;
    for c in part.chars() {
        match (c, in_quote) {
            ('"', false) => {
                unquoted.push_str("\"…\"");
                in_quote = true;
            }
            ('"', true) => in_quote = false,
            (_, false) => unquoted.push(c),
            (_, true) => {}
        }
    }
    unquoted
        .split_whitespace()
        .map(mask_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word with a digit in it becomes `#`, keeping the punctuation around it (`(3s)` → `(#)`).
fn mask_word(word: &str) -> String {
    let edge = |c: char| "()[]{}<>,;:.'`".contains(c);
    let core = word.trim_matches(edge);
    if !core.chars().any(|c| c.is_ascii_digit()) {
        return word.to_owned();
    }
    let start = word.len() - word.trim_start_matches(edge).len();
    let end = start + core.len();
    format!("{}#{}", &word[..start], &word[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_and_the_error_case_make_the_class() {
        let chain = [
            "GHL get contact failed",
            "unauthorized: the token was revoked; reinstall the app",
        ];
        assert_eq!(error_class(&chain), "GHL get contact failed: unauthorized");
    }

    #[test]
    fn a_chain_and_its_joined_reason_have_one_class() {
        let chain = [
            retries_exhausted(5),
            "eKyte create task failed".to_owned(),
            "transient failure: HTTP 503 from POST /tasks".to_owned(),
        ];
        let reason = "eKyte create task failed: transient failure: timed out after 10s";
        assert_eq!(
            error_class(&chain),
            "eKyte create task failed: transient failure"
        );
        assert_eq!(error_class(&[reason]), error_class(&chain));
    }

    #[test]
    fn ids_numbers_and_quoted_values_are_masked() {
        assert_eq!(
            error_class(&["busy: contact ve9EPM428h8vShlRW1KT is locked by worker-3f2a"]),
            "busy: contact # is locked by #"
        );
        assert_eq!(
            error_class(&[
                "GHL search contacts failed",
                "rate limited by the vendor (retry after 3s)"
            ]),
            "GHL search contacts failed: rate limited by the vendor (retry after #)"
        );
        assert_eq!(
            error_class(&[r#"tenant configuration: field "x-1" of "b""#]),
            r#"tenant configuration: field "…" of "…""#
        );
        assert_eq!(
            error_class(&["message body is not an envelope: expected value at line 1 column 1"]),
            "message body is not an envelope: expected value at line # column #"
        );
    }

    #[test]
    fn an_empty_chain_has_a_class_too() {
        assert_eq!(error_class::<&str>(&[]), NO_ERROR_RECORDED);
        assert_eq!(error_class(&["  "]), NO_ERROR_RECORDED);
        assert_eq!(
            error_class(&[retries_exhausted(2)]),
            "gave up after # attempts"
        );
    }

    #[test]
    fn a_long_class_is_cut() {
        let long = "x".repeat(500);
        let class = error_class(&[long]);
        assert_eq!(class.chars().count(), MAX_CHARS);
        assert!(class.ends_with('…'));
    }
}
