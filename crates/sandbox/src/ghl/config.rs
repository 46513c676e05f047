//! Configuration of the GHL simulator.
//!
//! Every field has a default, so `GhlConfig::default()` (or an empty TOML/JSON table) gives a
//! simulator with GHL's documented production numbers: 100 requests / 10 s and 200,000 / day
//! per app and location, 86,399 s access tokens, strict single-use refresh tokens, and no
//! faults. Tests compress time by lowering the numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::FaultConfig;

/// The whole simulator configuration. Deserialisable from the app's config file or CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct GhlConfig {
    /// Address to bind. `127.0.0.1` keeps the simulator off the network.
    pub host: String,
    /// Port to bind; 0 picks a free one (read it back with `GhlSandbox::base_url`).
    pub port: u16,
    /// Agency (company) that owns every location unless a location names another one.
    pub company_id: String,
    /// Locations created at start.
    pub locations: Vec<LocationSpec>,
    /// OAuth clients (Marketplace apps) registered at start.
    pub oauth_clients: Vec<OAuthClientSpec>,
    /// Private Integration Tokens registered at start.
    pub pits: Vec<PitSpec>,
    pub oauth: OAuthConfig,
    pub rate_limit: RateLimitConfig,
    pub webhooks: WebhookConfig,
    /// Agencies: bulk installs, `GET /oauth/installedLocations`, company-level webhooks.
    pub agency: AgencyConfig,
    /// Request faults (latency, 5xx, timeouts, 429 bursts); none by default.
    pub faults: FaultConfig,
    /// Lost answers after a completed write (off by default); unlike `faults`, these requests
    /// DO change data — they model a timeout whose outcome the client cannot know.
    pub write_faults: WriteFaults,
    /// How long a write takes to show up in `POST /contacts/search` (API.md §5: "updates may
    /// take a few seconds to appear in search results"). 0 = immediately.
    pub search_index_lag_ms: u64,
    /// GHL shows tags in lower case; the simulator stores them lower-cased (assumption, see
    /// README). Set to false to keep the case a client sent.
    pub lowercase_tags: bool,
    /// `GET /calendars/events` refuses (422) a range wider than this many days. [CAL2] states
    /// no limit; the default is the reading that breaks a client asking for years at once.
    /// 0 = no limit.
    pub calendar_events_max_days: u32,
    /// How `dndSettings` in a contact write lands on the contact's channels. API.md (§3.1,
    /// §3.2) is silent: `replace` (the default) drops the channels a write leaves out, which
    /// breaks a client that sends only the channels it changed; `merge` keeps them.
    pub dnd_write: DndWrite,
    /// Whether each hit of `POST /contacts/search` carries its own `searchAfter` array. Only a
    /// third-party mirror says it does (API.md §5): `absent` (the default) leaves it out, which
    /// breaks a client that pages with the last hit's `searchAfter`; `per_hit` adds
    /// `[sort values…, id]` to every hit. Under both, a cursor the client builds itself from
    /// the last hit (`[dateUpdated epoch ms, id]` for a `dateUpdated` sort) is accepted.
    pub search_cursor: SearchCursor,
}

/// See [`GhlConfig::search_cursor`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchCursor {
    #[default]
    Absent,
    PerHit,
}

/// See [`GhlConfig::dnd_write`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DndWrite {
    #[default]
    Replace,
    Merge,
}

impl Default for GhlConfig {
    /// The pessimistic reading of every silence, or each switch flipped under
    /// `SANDBOX_VARIANTS=flipped` (see [`crate::variants`]).
    fn default() -> Self {
        let flipped = crate::variants::Variants::from_env().flipped();
        Self {
            host: "127.0.0.1".to_owned(),
            port: 0,
            company_id: "sandboxCompany0000001".to_owned(),
            locations: Vec::new(),
            oauth_clients: Vec::new(),
            pits: Vec::new(),
            oauth: OAuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            webhooks: WebhookConfig::default(),
            agency: AgencyConfig::default(),
            faults: FaultConfig::default(),
            write_faults: WriteFaults::default(),
            search_index_lag_ms: 0,
            lowercase_tags: !flipped,
            calendar_events_max_days: if flipped { 0 } else { 31 },
            dnd_write: if flipped {
                DndWrite::Merge
            } else {
                DndWrite::Replace
            },
            search_cursor: if flipped {
                SearchCursor::PerHit
            } else {
                SearchCursor::Absent
            },
        }
    }
}

/// A location (sub-account) to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LocationSpec {
    /// Empty = generate a GHL-like 20-character id.
    pub id: String,
    pub name: String,
    /// Empty = the simulator's `company_id`.
    pub company_id: String,
    /// The location setting "Allow Duplicate Contact" (API.md §6); GHL's default is off.
    pub allow_duplicate_contact: bool,
    /// IANA zone; appointment times of `GET /contacts/{id}/appointments` are rendered in it.
    pub timezone: String,
    /// The location's email (`LocationCreate` / `LocationUpdate` carry it, API.md §9.2a).
    pub email: String,
    /// The address `GET /oauth/installedLocations` shows ([O2] `InstalledLocationSchema`).
    pub address: String,
}

impl Default for LocationSpec {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: "Sandbox location".to_owned(),
            company_id: String::new(),
            allow_duplicate_contact: false,
            timezone: "UTC".to_owned(),
            email: String::new(),
            address: String::new(),
        }
    }
}

/// A Marketplace app's OAuth client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OAuthClientSpec {
    pub client_id: String,
    pub client_secret: String,
    /// The app id carried by webhooks and location tokens; empty = derived from `client_id`.
    pub app_id: String,
    pub version_id: String,
    /// Scopes granted at consent; `None` = every scope.
    pub scopes: Option<Vec<String>>,
}

impl Default for OAuthClientSpec {
    fn default() -> Self {
        Self {
            client_id: "sandbox-client".to_owned(),
            client_secret: "sandbox-secret".to_owned(),
            app_id: String::new(),
            version_id: String::new(),
            scopes: None,
        }
    }
}

/// A Private Integration Token: a static bearer token bound to one location (or company).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PitSpec {
    /// Empty = generate `pit-<uuid>`.
    pub token: String,
    /// Location the token belongs to (a sub-account PIT).
    pub location_id: Option<String>,
    /// Company the token belongs to (an agency PIT), when `location_id` is not set.
    pub company_id: Option<String>,
    /// The rate-limit budget is per app and location (API.md §8); PITs of one app share it.
    /// Empty = the token is its own app.
    pub app_id: String,
    /// The scopes the token was created with. A real PIT is always created with a chosen
    /// list, so there is no "every scope" here: an empty list is refused at registration.
    pub scopes: Vec<String>,
}

/// OAuth token behaviour (API.md §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct OAuthConfig {
    /// `expires_in` of access tokens; GHL answers 86399 (API.md §7, [O2] example).
    pub access_token_ttl_secs: u64,
    /// Window in which identical concurrent refreshes get the same new pair ([CHLOG]: 30 s in
    /// production). 0 = strict single use, the worst case a worker must survive.
    pub refresh_grace_secs: u64,
    /// Lifetime of an authorization code issued by the control API.
    pub auth_code_ttl_secs: u64,
    /// Whether a `refresh_token` grant must say `user_type`. [O2] `GetAccessCodebodyDto`
    /// lists it ("The type of token to be requested", `Company | Location`) but requires only
    /// `client_id`, `client_secret` and `grant_type`, and says nothing of it per grant:
    /// `required` (the default) refuses a refresh without it (400 `Missing parameter:
    /// user_type`) or with another type than the token's (400 `Invalid parameter:
    /// user_type`); `optional` takes the token's type when it is left out.
    pub refresh_user_type: RefreshUserType,
}

/// See [`OAuthConfig::refresh_user_type`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshUserType {
    #[default]
    Required,
    Optional,
}

impl Default for OAuthConfig {
    /// GHL's numbers; the one silence, `refresh_user_type`, read as in [`GhlConfig::default`].
    fn default() -> Self {
        let flipped = crate::variants::Variants::from_env().flipped();
        Self {
            access_token_ttl_secs: 86_399,
            refresh_grace_secs: 0,
            auth_code_ttl_secs: 600,
            refresh_user_type: if flipped {
                RefreshUserType::Optional
            } else {
                RefreshUserType::Required
            },
        }
    }
}

/// Rate limits per (app, location) (API.md §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Burst: at most `max` requests per `interval_ms` (GHL: 100 / 10 s, API.md §8).
    pub max: u32,
    pub interval_ms: u64,
    /// How the burst window is counted; GHL does not document it.
    pub window: RateWindow,
    /// Daily budget (GHL: 200,000) over a fixed window of `daily_window_ms` that starts at the
    /// bucket's first request.
    pub daily_limit: u64,
    pub daily_window_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max: 100,
            interval_ms: 10_000,
            window: RateWindow::Sliding,
            daily_limit: 200_000,
            daily_window_ms: 86_400_000,
        }
    }
}

/// The burst window's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateWindow {
    /// At most `max` admitted requests in any `interval_ms` ending now: the strictest reading,
    /// and the default (a client that passes it passes a fixed window too).
    #[default]
    Sliding,
    /// `max` per window of `interval_ms` starting at the bucket's first request after the
    /// previous window ended; `X-RateLimit-Remaining` jumps back to `max` at each reset.
    Fixed,
}

/// Agency behaviour the documents leave open (API.md §7, [O2] `installedLocations`). Each
/// default is the reading a careless client is most likely to trip over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct AgencyConfig {
    /// The largest `limit` `GET /oauth/installedLocations` honours; a larger one is clamped
    /// silently (the v3 twin documents 1–100; v2 documents no maximum).
    pub installed_locations_max_limit: u64,
    /// What `count` of `GET /oauth/installedLocations` counts. [O2] says "Total location count
    /// under the company", whatever the filters.
    pub installed_locations_count: InstalledCount,
    /// Without `isInstalled`, list every location of the company (each with its
    /// `isInstalled`), not only the installed ones. `false` = installed ones only.
    pub installed_locations_lists_all: bool,
    /// When a new location is covered by a company install with `installToFutureLocations`,
    /// also send a location-form `INSTALL` after its `LocationCreate`. The documents only
    /// promise `LocationCreate`, so by default a client must notice the install itself.
    pub install_webhook_for_future_locations: bool,
}

impl Default for AgencyConfig {
    fn default() -> Self {
        Self {
            installed_locations_max_limit: 100,
            installed_locations_count: InstalledCount::Company,
            installed_locations_lists_all: true,
            install_webhook_for_future_locations: false,
        }
    }
}

/// The `count` of `GET /oauth/installedLocations`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstalledCount {
    /// Every location of the company, whatever the filters ([O2]'s description).
    #[default]
    Company,
    /// The locations that match the filters (before `skip`/`limit`).
    Matching,
}

/// Webhook emission (API.md §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct WebhookConfig {
    /// Where events are POSTed; `None` = events are only logged (see the webhook log).
    pub url: Option<String>,
    /// `appId` / `versionId` of every payload (real payloads carry both, #264).
    pub app_id: String,
    pub version_id: String,
    /// Also sign with RSA-SHA256 in `x-wh-signature` (legacy, API.md §9.3). Off by default:
    /// generating a 2048-bit key takes seconds in a debug build.
    pub rsa_signature: bool,
    /// GHL retries only on 429, at most 6 times ([RETRY], API.md §9.5).
    pub max_retries: u32,
    /// Delay before each retry; GHL waits ~10 min, tests want it short.
    pub retry_delay_ms: u64,
    /// Per-delivery HTTP timeout; a timeout is final, as any non-429 outcome.
    pub delivery_timeout_ms: u64,
    /// How many emitted payloads the in-memory log keeps (oldest dropped first).
    pub log_capacity: usize,
    pub faults: WebhookFaults,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            app_id: "sandboxApp00000000001".to_owned(),
            version_id: "sandboxVersion000001".to_owned(),
            rsa_signature: false,
            max_retries: 6,
            retry_delay_ms: 1_000,
            delivery_timeout_ms: 10_000,
            log_capacity: 10_000,
            faults: WebhookFaults::default(),
        }
    }
}

/// Delivery faults. Decisions come from their own seeded RNG, so they are reproducible and do
/// not shift the request-fault sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct WebhookFaults {
    pub seed: u64,
    /// Probability that an event is never delivered (GHL loses events on 5xx, API.md §9.5).
    pub drop_probability: f64,
    /// Probability that an event is delivered twice (same body, same `webhookId`).
    pub duplicate_probability: f64,
    /// Probability that an event is held back and delivered after the next one.
    pub reorder_probability: f64,
    /// Send `TaskCreate` without `contactId` (a real GHL bug, #332).
    pub omit_task_create_contact_id: bool,
}

impl Default for WebhookFaults {
    fn default() -> Self {
        Self {
            seed: 0x00c0_ffee,
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            reorder_probability: 0.0,
            omit_task_create_contact_id: false,
        }
    }
}

/// Answers lost after the write was applied: the client sees a 504 (or its own timeout) while
/// the record was created, updated or deleted, and any webhook was emitted. This is the
/// "outcome unknown" case DESIGN.md's exactly-once create must resolve; GHL has its own
/// variant, a create answered 422 that still created the contact (#64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case")]
pub struct WriteFaults {
    pub seed: u64,
    /// Probability that a successful non-GET API answer is replaced by a 504.
    pub lost_response_rate: f64,
    /// Overrides keyed by `"METHOD /route"` as in the counters (e.g. `"POST /oauth/token"`).
    pub routes: BTreeMap<String, f64>,
}

impl Default for WriteFaults {
    fn default() -> Self {
        Self {
            seed: 0x10_57,
            lost_response_rate: 0.0,
            routes: BTreeMap::new(),
        }
    }
}
