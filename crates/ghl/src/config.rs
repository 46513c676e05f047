//! Configuration of the GHL adapter.
//!
//! Every knob has a default taken from GHL's documented production behaviour (`shared/ghl/
//! API.md`, section named on each field), so `GhlAdapterConfig::default()` plus the app's
//! client id and secret is a working production setup. Tests point `api_base` at a simulator on
//! loopback and compress the rate-limit numbers. [`GhlAdapterConfig::validate`] is called by the
//! constructors, so a bad value fails at start-up with the field's name, never mid-request.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::ConfigError;

/// Production API base URL (API.md §1, \[C2\] `servers[0].url`).
pub const DEFAULT_API_BASE: &str = "https://services.leadconnectorhq.com";
/// Where a person chooses the location to install the app on (API.md §7, \[AUTHMD\]).
pub const DEFAULT_MARKETPLACE_BASE: &str = "https://marketplace.gohighlevel.com";

/// The whole adapter configuration.
#[derive(Debug, Clone)]
pub struct GhlAdapterConfig {
    /// Base URL of every v2 API, the OAuth token endpoint included (API.md §1). No trailing
    /// path is needed; one is tolerated.
    pub api_base: Url,
    /// Base of the `chooselocation` authorisation page (API.md §7; white-label agencies use
    /// `https://marketplace.leadconnectorhq.com`).
    pub marketplace_base: Url,
    /// The Marketplace app's OAuth client (API.md §7). May stay empty when every tenant uses
    /// a Private Integration Token.
    pub client_id: String,
    pub client_secret: SecretString,
    /// The Marketplace app id: the rate budget is kept per (app, location) (API.md §8).
    /// Empty = the client id.
    pub app_id: String,
    /// Where GHL sends the person back with `?code=` (API.md §7); also sent with the code
    /// exchange when set.
    pub redirect_uri: Option<Url>,
    /// Scopes asked for in the authorisation URL (API.md §7 "Scopes needed here").
    pub scopes: Vec<String>,
    /// Whole-request timeout (connect, send, read).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Refresh an OAuth access token proactively when less than this remains (the mission
    /// asks for 5 minutes; GHL's own SDK uses 30 s, API.md §7).
    pub refresh_margin: Duration,
    pub rate: RateConfig,
    pub retry: RetryPolicy,
}

impl Default for GhlAdapterConfig {
    fn default() -> Self {
        Self {
            api_base: parse_const_url(DEFAULT_API_BASE),
            marketplace_base: parse_const_url(DEFAULT_MARKETPLACE_BASE),
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            app_id: String::new(),
            redirect_uri: None,
            scopes: default_scopes(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            refresh_margin: Duration::from_secs(5 * 60),
            rate: RateConfig::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// The scopes this service needs (API.md §7 "Scopes needed here").
pub fn default_scopes() -> Vec<String> {
    [
        "contacts.readonly",
        "contacts.write",
        "businesses.readonly",
        "locations/tasks.readonly",
        "locations.readonly",
        "locations/customFields.readonly",
        "locations/tags.readonly",
        "calendars/events.readonly",
        // A sweep reads appointments per calendar (`GET /calendars/`).
        "calendars.readonly",
        "users.readonly",
        // Agency installs: list the installed locations, mint location tokens
        // (`POST /oauth/locationToken` requires `oauth.write`).
        "oauth.readonly",
        "oauth.write",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Parse one of the URL constants above. Infallible (they are literals, and the unit tests
/// parse them), so this is the one `expect` of the crate outside tests.
fn parse_const_url(raw: &'static str) -> Url {
    Url::parse(raw).expect("the default URL constants are valid URLs")
}

impl GhlAdapterConfig {
    /// The app key of the rate budget: `app_id`, or the client id when it is empty.
    pub fn budget_app(&self) -> &str {
        if self.app_id.is_empty() {
            &self.client_id
        } else {
            &self.app_id
        }
    }

    /// Check every value once, at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, url) in [
            ("api_base", &self.api_base),
            ("marketplace_base", &self.marketplace_base),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(ConfigError::invalid(
                    field,
                    "must be an http(s) URL with a host",
                ));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "request_timeout",
                "must be above zero",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "connect_timeout",
                "must be above zero",
            ));
        }
        self.rate.validate()?;
        self.retry.validate()
    }
}

/// The rate budget of one (app, location) (API.md §8). The numbers are the starting point:
/// every response's `X-RateLimit-*` headers replace them.
#[derive(Debug, Clone, PartialEq)]
pub struct RateConfig {
    /// Burst: at most `max` requests in any window of `interval` (API.md §8: 100 / 10 s).
    pub max: u32,
    pub interval: Duration,
    /// Requests per day (API.md §8: 200,000).
    pub daily_limit: u64,
    /// When another client (another replica, another process of the same app) is seen using
    /// the same budget, this share of `max` is left unused so that both stay under the limit
    /// without talking to each other.
    pub shared_reserve: f64,
    /// Bulk calls stop when fewer daily requests than this remain, so webhooks keep working
    /// for the rest of the day (M9: real-time before backfill). Default: 5% of the daily limit.
    pub daily_bulk_reserve: u64,
    /// After the daily budget ran out, one call is let through this often to learn from the
    /// headers whether the day rolled over (GHL documents no reset header, API.md §8).
    pub daily_recheck: Duration,
    /// A budget with no answer in its recent past sends one request alone first: until the
    /// headers of an answer arrive it cannot know whether others spent the window (a worker
    /// restarted after a crash, whose predecessor's calls still count). Costs one round trip
    /// after a start or an idle interval.
    pub probe_first: bool,
    /// Slots of every window a process alone leaves free once it has seen other replicas (a
    /// single worker uses the whole window), so that a newcomer's first request (a replica
    /// that starts, a worker restarted after a crash) is admitted and shows up in the count.
    /// A refused one would not, and the newcomer would wait behind a process that never
    /// learns of it. Two cover two newcomers starting together.
    pub newcomer_room: u32,
    /// This share of every window is left to real-time calls: a bulk call waits when taking
    /// a slot would leave fewer free. GHL's window is a burst (100 per 10 s), so a backfill
    /// alone would fill it at once, and a webhook arriving just after would wait for the
    /// window's first slot to free, up to the whole interval. Costs a backfill this share of
    /// its pace.
    pub realtime_share: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            max: 100,
            interval: Duration::from_secs(10),
            daily_limit: 200_000,
            shared_reserve: 0.2,
            daily_bulk_reserve: 10_000,
            daily_recheck: Duration::from_secs(60),
            probe_first: true,
            newcomer_room: 2,
            realtime_share: 0.05,
        }
    }
}

impl RateConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max == 0 {
            return Err(ConfigError::invalid("rate.max", "must be at least 1"));
        }
        if self.interval.is_zero() {
            return Err(ConfigError::invalid("rate.interval", "must be above zero"));
        }
        if self.daily_limit == 0 {
            return Err(ConfigError::invalid(
                "rate.daily_limit",
                "must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.shared_reserve) {
            return Err(ConfigError::invalid(
                "rate.shared_reserve",
                "must be at least 0 and below 1",
            ));
        }
        if self.daily_recheck.is_zero() {
            return Err(ConfigError::invalid(
                "rate.daily_recheck",
                "must be above zero",
            ));
        }
        Ok(())
    }
}

/// Retries inside one port call: 429s (any request) and, for idempotent requests only, 5xx,
/// timeouts and broken connections. Exponential backoff with full jitter: attempt `n` waits a
/// uniform random time in `0..=min(max_delay, base_delay · 2ⁿ⁻¹)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "retry.max_attempts",
                "must be at least 1",
            ));
        }
        if self.base_delay > self.max_delay {
            return Err(ConfigError::invalid(
                "retry.base_delay",
                "must not be above retry.max_delay",
            ));
        }
        Ok(())
    }

    /// The upper bound of the wait before attempt `attempt + 1` (after `attempt` failures).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A full-jitter delay for the wait after `attempt` failures.
    pub fn delay(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let ceiling = self.ceiling(attempt);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let c = GhlAdapterConfig::default();
        c.validate().unwrap();
        assert_eq!(c.api_base.as_str(), "https://services.leadconnectorhq.com/");
        assert_eq!(
            (c.rate.max, c.rate.interval),
            (100, Duration::from_secs(10))
        );
        assert_eq!(c.rate.daily_limit, 200_000);
        assert_eq!(c.refresh_margin, Duration::from_secs(300));
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut c = GhlAdapterConfig::default();
        c.rate.max = 0;
        assert!(c.validate().unwrap_err().to_string().contains("rate.max"));
        let c = GhlAdapterConfig {
            api_base: Url::parse("ftp://x").unwrap(),
            ..GhlAdapterConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("api_base"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_secs(1));
        assert_eq!(p.ceiling(60), Duration::from_secs(1));
        for a in 1..8 {
            assert!(p.delay(a) <= p.ceiling(a));
        }
    }
}
