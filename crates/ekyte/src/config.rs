//! How the eKyte adapter is configured: where eKyte lives, which automation routes to use, how
//! long to wait, how to retry, and how much one poll may cost.
//!
//! Every field has a default that targets production eKyte, so an empty TOML table is a valid
//! configuration; the sandbox only overrides `base_url`. [`EkyteConfig::validate`] checks the
//! values once, at start-up, and names the field that is wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

/// Which of eKyte's two automation route sets creates records (API.md §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutomationApi {
    /// `/n8n/...`: reads under `/n8n/polling/...`, writes directly under `/n8n/...` (API.md §4,
    /// eKyte's own n8n node, production URL).
    #[default]
    N8n,
    /// `/zapier/...`: reads and writes under the same prefix (API.md §4, server controller
    /// snapshot; the production prefix is inferred).
    Zapier,
}

impl AutomationApi {
    /// Path of a read (`GET`) route, without a leading slash, e.g. `n8n/polling/boards`.
    pub(crate) fn read_path(self, route: &str) -> String {
        match self {
            Self::N8n => format!("n8n/polling/{route}"),
            Self::Zapier => format!("zapier/{route}"),
        }
    }

    /// Path of a write (`POST`) route, without a leading slash, e.g. `n8n/tasks`.
    pub(crate) fn write_path(self, route: &str) -> String {
        match self {
            Self::N8n => format!("n8n/{route}"),
            Self::Zapier => format!("zapier/{route}"),
        }
    }
}

/// Bounded retries with exponential backoff and full jitter, for idempotent requests (and for
/// creates once a lookup showed that the earlier attempt created nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included. 1 disables retries.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// Upper bound of one backoff, also of an honoured `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryConfig {
    /// The backoff before attempt `attempt + 1` (attempt counts from 1): a random duration in
    /// `[0, min(max, base·2^(attempt-1))]` ("full jitter"), or the server's `Retry-After`
    /// when it sent one, capped at `max_delay`.
    pub(crate) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let cap = exp.min(self.max_delay);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return cap;
        }
        Duration::from_millis(rand::random::<u64>() % (millis + 1))
    }
}

/// What one change poll may cost (DESIGN.md §2: eKyte changes are found by polling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollConfig {
    /// HTTP requests one poll may make, retries included. When a poll reaches it, the
    /// workspaces not scanned yet are scanned first by the next poll (the cursor is kept in
    /// the run store).
    pub max_calls: u32,
    /// Links read from the link store per page.
    pub link_page: u32,
    /// A poll run checkpointed less than this long ago is alive (a poll checkpoints after
    /// every workspace): another poll of the tenant that starts meanwhile does nothing, so
    /// scheduled polls and continuations never scan the same workspaces side by side. Past
    /// it, a poll run left by a dead worker is resumed.
    pub alive_for: Duration,
    /// When several tenants share one eKyte company, the company's workspace listing one
    /// tenant's poll read is reused by the others' polls for this long: the company is listed
    /// once per polling cycle, not once per location.
    pub shared_listing_for: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            max_calls: 500,
            link_page: 500,
            alive_for: Duration::from_secs(30),
            shared_listing_for: Duration::from_secs(30),
        }
    }
}

/// The adapter's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EkyteConfig {
    /// Host of all three surfaces (API.md §1: `https://api.ekyte.com`). The sandbox serves
    /// them on loopback.
    pub base_url: String,
    /// Automation route set used for creates and the board listing.
    pub automation: AutomationApi,
    /// Path of the MCP endpoint under `base_url` (API.md §2.2: `/mcp?token=…`).
    pub mcp_path: String,
    /// MCP protocol revision announced in `initialize` (API.md §5: `2024-11-05` seen in use).
    pub mcp_protocol_version: String,
    /// Whole-request timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub retry: RetryConfig,
    /// Pages one listing may follow before the adapter gives up (a guard against a server
    /// that never reports the last page; API.md §3.1 pages hold 100 records).
    pub max_pages: u32,
    pub poll: PollConfig,
}

impl Default for EkyteConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.ekyte.com/".to_owned(),
            automation: AutomationApi::default(),
            mcp_path: "/mcp".to_owned(),
            mcp_protocol_version: "2024-11-05".to_owned(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryConfig::default(),
            max_pages: 1000,
            poll: PollConfig::default(),
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ekyte.{field}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

impl EkyteConfig {
    /// A configuration for a server at `base_url` (the sandbox), everything else default.
    pub fn for_base_url(base_url: &str) -> Result<Self, ConfigError> {
        let config = Self {
            base_url: base_url.to_owned(),
            ..Self::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Check every value once; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.to_owned(),
            })
        };
        let base = self.base()?;
        if !matches!(base.scheme(), "http" | "https") {
            return bad("base_url", "must be an http or https URL");
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return bad("base_url", "must name a host");
        }
        if base.query().is_some() {
            return bad(
                "base_url",
                "must not carry a query (credentials come from the credential store)",
            );
        }
        if !self.mcp_path.starts_with('/') || self.mcp_path.contains('?') {
            return bad(
                "mcp_path",
                "must be a path starting with '/', without a query",
            );
        }
        if self.mcp_protocol_version.trim().is_empty() {
            return bad("mcp_protocol_version", "must not be empty");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be positive");
        }
        if self.retry.max_attempts == 0 {
            return bad("retry.max_attempts", "must be at least 1");
        }
        if self.retry.max_delay < self.retry.base_delay {
            return bad("retry.max_delay", "must not be below retry.base_delay");
        }
        if self.max_pages == 0 {
            return bad("max_pages", "must be at least 1");
        }
        if self.poll.max_calls < 2 {
            return bad(
                "poll.max_calls",
                "must allow at least the workspace listing and one task listing",
            );
        }
        if self.poll.link_page == 0 {
            return bad("poll.link_page", "must be at least 1");
        }
        Ok(())
    }

    /// `base_url` parsed, with a trailing slash so relative paths keep its path prefix
    /// (`https://proxy/ekyte/` + `v1.0/workspaces`).
    pub(crate) fn base(&self) -> Result<Url, ConfigError> {
        let mut base = Url::parse(&self.base_url).map_err(|e| ConfigError {
            field: "base_url",
            problem: e.to_string(),
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_target_production() {
        let c = EkyteConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.base().unwrap().join("v1.2/tasks").unwrap().as_str(),
            "https://api.ekyte.com/v1.2/tasks"
        );
    }

    #[test]
    fn a_base_path_prefix_is_kept() {
        let c = EkyteConfig::for_base_url("http://127.0.0.1:9/ekyte").unwrap();
        let base = c.base().unwrap();
        assert_eq!(
            base.join(&AutomationApi::N8n.read_path("boards"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/ekyte/n8n/polling/boards"
        );
        assert_eq!(
            base.join(&AutomationApi::Zapier.write_path("tasks"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/ekyte/zapier/tasks"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let c = EkyteConfig {
            retry: RetryConfig {
                max_attempts: 0,
                ..RetryConfig::default()
            },
            ..EkyteConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "retry.max_attempts");
        assert!(EkyteConfig::for_base_url("ftp://x").is_err());
        assert!(EkyteConfig::for_base_url("http://x/?apiKey=1").is_err());
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let r = RetryConfig {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for attempt in 1..10 {
            assert!(r.backoff(attempt, None) <= Duration::from_millis(300));
        }
        assert_eq!(
            r.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn partial_toml_like_input_deserialises() {
        let c: EkyteConfig = serde_json::from_value(serde_json::json!({
            "base_url": "http://127.0.0.1:8080",
            "automation": "zapier",
            "retry": { "base_delay": "10ms" }
        }))
        .unwrap();
        assert_eq!(c.automation, AutomationApi::Zapier);
        assert_eq!(c.retry.base_delay, Duration::from_millis(10));
        assert_eq!(c.retry.max_attempts, 4);
    }
}
