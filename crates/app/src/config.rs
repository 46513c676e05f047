//! Configuration: embedded commented defaults (`config/default.toml`) → a TOML file
//! (`--config` or `GES_CONFIG`) → environment variables `GES_…` with `__` for nesting.
//!
//! Loaded and validated once at start. Every error names the key (`queue.prefetch`) and what
//! was wrong with it. Secrets are [`SecretString`]s: [`Config::redacted`] is the only view
//! meant for printing, and it never contains a secret's value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The embedded defaults, shipped inside the binary.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub http: HttpConfig,
    pub ghl: GhlConfig,
    pub ekyte: EkyteConfig,
    pub crypto: CryptoConfig,
    pub scheduler: SchedulerConfig,
    pub sync: SyncConfig,
    pub worker: WorkerConfig,
    pub telemetry: TelemetryConfig,
    pub console: ConsoleConfig,
}

/// The operator console (`/console`): off unless enabled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// The header a trusted reverse proxy names the user in; empty: password logins.
    pub trusted_header: String,
    #[serde(default)]
    pub accounts: Vec<ConsoleAccount>,
    /// Deep links from a contact's page (placeholders `{location}`, `{contact}`).
    pub ghl_contact_url: String,
    /// Placeholders `{company}`, `{workspace}`.
    pub ekyte_workspace_url: String,
    /// Placeholders `{company}`, `{task}`.
    pub ekyte_task_url: String,
}

/// One console user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleAccount {
    pub user: String,
    /// An argon2 PHC string; may be empty when identity comes from `trusted_header`.
    #[serde(default)]
    pub password_hash: SecretString,
    pub role: ConsoleRole,
    /// The tenants it may see and act on; empty: all.
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleRole {
    /// Reads every page it may see.
    Viewer,
    /// Also acts: replays, pauses, syncs.
    Operator,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// May hold a password: printed with it masked.
    pub url: SecretString,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueBackend {
    Amqp,
    Memory,
}

/// Whether the GHL rate budgets of the replicas take their slots from one window in the
/// database (`rate_window`), so that together they use the whole of GHL's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedWindow {
    /// On with PostgreSQL (replicas), off with SQLite (one process).
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub backend: QueueBackend,
    /// May hold a password: printed with it masked.
    pub url: SecretString,
    pub prefix: String,
    pub prefetch: u16,
    /// Share the bulk lane's slots between tenants (see `app::fair`).
    pub fair_bulk: bool,
    pub max_attempts: u32,
    #[serde(deserialize_with = "durations")]
    pub retry_delays: Vec<Duration>,
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub bind: SocketAddr,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GhlConfig {
    pub api_base: url::Url,
    pub marketplace_base: url::Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub app_id: String,
    pub redirect_uri: url::Url,
    pub scopes: Vec<String>,
    pub webhook_ed25519_key: String,
    pub webhook_rsa_key: String,
    #[serde(with = "humantime_serde")]
    pub replay_window: Duration,
    pub rate_max: u32,
    #[serde(with = "humantime_serde")]
    pub rate_interval: Duration,
    pub daily_limit: u32,
    /// See [`SharedWindow`].
    pub shared_window: SharedWindow,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Agency installs: the approved locations of a company that have no tenant get one.
    #[serde(default)]
    pub agency_rules: Vec<AgencyRule>,
}

/// A mapping rule: every location of GHL company `company` that an agency install approves
/// (or adds later, with `installToFutureLocations`) and that has no tenant gets one, in one of
/// two forms (exactly one):
///
/// - `like = "<tenant>"`: made like that tenant: its eKyte company, settings and eKyte keys;
/// - `ekyte_company = <id>`: in that eKyte company, with `settings` (the same table as a
///   `tenants add --settings` file) and the eKyte keys `ekyte_api_key` / `ekyte_mcp_token`
///   (secrets; without them, the keys of a tenant already on that eKyte company).
///
/// Each tenant a rule makes is checked first, like `tenants add` checks one; a location whose
/// tenant fails the checks stays pending, with the reason, in `tenants list`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyRule {
    pub company: String,
    #[serde(default)]
    pub like: Option<String>,
    #[serde(default)]
    pub ekyte_company: Option<u64>,
    #[serde(default)]
    pub settings: Option<domain::TenantSettings>,
    #[serde(default)]
    pub ekyte_api_key: Option<SecretString>,
    #[serde(default)]
    pub ekyte_mcp_token: Option<SecretString>,
}

impl ConsoleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, template) in [
            ("console.ghl_contact_url", &self.ghl_contact_url),
            ("console.ekyte_workspace_url", &self.ekyte_workspace_url),
            ("console.ekyte_task_url", &self.ekyte_task_url),
        ] {
            let filled = [
                "{location}",
                "{contact}",
                "{company}",
                "{workspace}",
                "{task}",
            ]
            .iter()
            .fold(template.clone(), |t, p| t.replace(p, "x"));
            let ok = url::Url::parse(&filled).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(invalid(
                    key,
                    format!("{template:?} is not an http(s) URL (placeholders aside)"),
                ));
            }
        }
        const KEY: &str = "console.accounts";
        if self.enabled && self.accounts.is_empty() {
            return Err(invalid(
                KEY,
                "the console is enabled but has no account: add [[console.accounts]]",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.accounts {
            let user_ok = !a.user.is_empty()
                && a.user.len() <= 64
                && a.user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
            if !user_ok {
                return Err(invalid(
                    KEY,
                    format!(
                        "user {:?}: letters, digits, '.', '_', '-' or '@', at most 64",
                        a.user
                    ),
                ));
            }
            if !seen.insert(a.user.to_ascii_lowercase()) {
                return Err(invalid(KEY, format!("user {:?} appears twice", a.user)));
            }
            let hash = a.password_hash.expose_secret();
            if hash.is_empty() {
                if self.trusted_header.trim().is_empty() {
                    return Err(invalid(
                        KEY,
                        format!(
                            "user {:?} has no password_hash (needed unless console.trusted_header is set)",
                            a.user
                        ),
                    ));
                }
            } else if argon2::PasswordHash::new(hash).is_err() {
                return Err(invalid(
                    KEY,
                    format!(
                        "user {:?}: password_hash is not an argon2 hash (`ghl-ekyte-sync console hash-password` makes one)",
                        a.user
                    ),
                ));
            }
            for t in &a.tenants {
                domain::TenantId::parse(t)
                    .map_err(|e| invalid(KEY, format!("user {:?}: tenant {t:?}: {e}", a.user)))?;
            }
        }
        Ok(())
    }
}

impl AgencyRule {
    /// A rule that makes tenants like `like`.
    pub fn like(company: impl Into<String>, like: impl Into<String>) -> Self {
        Self {
            company: company.into(),
            like: Some(like.into()),
            ekyte_company: None,
            settings: None,
            ekyte_api_key: None,
            ekyte_mcp_token: None,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        const KEY: &str = "ghl.agency_rules";
        if self.company.trim().is_empty() {
            return Err(invalid(KEY, "a rule needs the GHL `company` it applies to"));
        }
        match (&self.like, self.ekyte_company) {
            (Some(_), None) => {
                if self.settings.is_some()
                    || self.ekyte_api_key.is_some()
                    || self.ekyte_mcp_token.is_some()
                {
                    return Err(invalid(
                        KEY,
                        format!(
                            "the rule for company {}: `like` takes the tenant's settings and keys; `settings`, `ekyte_api_key` and `ekyte_mcp_token` go with `ekyte_company`",
                            self.company
                        ),
                    ));
                }
                Ok(())
            }
            (None, Some(id)) => {
                domain::EkyteCompanyId::new(id).map_err(|e| {
                    invalid(
                        KEY,
                        format!("the rule for company {}: ekyte_company: {e}", self.company),
                    )
                })?;
                let settings = self.settings.clone().unwrap_or_default();
                settings.validate().map_err(|e| {
                    invalid(
                        KEY,
                        format!("the rule for company {}: settings: {e}", self.company),
                    )
                })?;
                let missing = settings.missing();
                if !missing.is_empty() {
                    return Err(invalid(
                        KEY,
                        format!(
                            "the rule for company {}: its settings lack what every sync needs: {}",
                            self.company,
                            missing.join(", ")
                        ),
                    ));
                }
                if self.ekyte_mcp_token.is_some() && self.ekyte_api_key.is_none() {
                    return Err(invalid(
                        KEY,
                        format!(
                            "the rule for company {}: an ekyte_mcp_token needs the ekyte_api_key too",
                            self.company
                        ),
                    ));
                }
                Ok(())
            }
            _ => Err(invalid(
                KEY,
                format!(
                    "the rule for company {} needs exactly one of `like` and `ekyte_company`",
                    self.company
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EkyteConfig {
    pub api_base: url::Url,
    pub automation_path: String,
    pub mcp_path: String,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoConfig {
    pub key: SecretString,
    pub key_id: String,
    pub old_keys: BTreeMap<String, SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub incremental_every: Duration,
    /// `HH:MM`, UTC.
    pub full_sync_at: String,
    #[serde(with = "humantime_serde")]
    pub poll_every: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(with = "humantime_serde")]
    pub incremental_overlap: Duration,
    pub page_size: u32,
    #[serde(with = "humantime_serde")]
    pub contact_lock_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub claim_stale_after: Duration,
    #[serde(with = "humantime_serde")]
    pub inbox_retention: Duration,
    /// Sweeps read the tasks and appointments of never-synced contacts many contacts per
    /// call (the location's task search and calendars) instead of once per contact.
    pub prefetch: bool,
    /// Read appointments from the location's calendars (`GET /calendars/`, then
    /// `GET /calendars/events` per calendar) over this window around now; appointments
    /// outside it are not shown in a profile note made by a sweep. Needs the
    /// `calendars.readonly` scope; without it, each contact's sync reads its own.
    pub appointments_from_calendars: bool,
    #[serde(with = "humantime_serde")]
    pub appointments_past: Duration,
    #[serde(with = "humantime_serde")]
    pub appointments_future: Duration,
    /// Contact syncs one sweep message queues before its continuation (0: no limit).
    pub sweep_batch: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often a worker writes what it observed (GHL rate budgets, queue waits) for the
    /// console.
    #[serde(with = "humantime_serde")]
    pub observe_every: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The log format of the services (`run`, `worker`, `ingress`); one-shot commands log in
    /// human form at a terminal, and in this format otherwise only when it is `json`.
    pub format: LogFormat,
    /// The log filter of the services.
    pub level: String,
    /// The log filter of one-shot commands (`status`, `tenants`, `dlq`, `sync`, `migrate`, …):
    /// `warn` by default, so their routine steps stay quiet. `RUST_LOG` wins over both.
    pub command_level: String,
    /// The collector's OTLP/HTTP traces URL (`…:4318/v1/traces`); empty = no trace export.
    pub otlp_endpoint: String,
    /// Headers for the collector (an ingest key, say): secrets, printed redacted.
    pub otlp_headers: BTreeMap<String, SecretString>,
    #[serde(with = "humantime_serde")]
    pub otlp_timeout: Duration,
    /// The share of traces kept (0.0–1.0), decided at the trace's root; children follow it.
    pub otlp_sample_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers do not deserialise (wrong type, unknown key, unreadable file).
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A value of the right type that does not make sense.
    #[error("invalid configuration: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// Format figment's errors so each names the dotted key it is about.
fn load_error(e: figment::Error) -> ConfigError {
    let lines: Vec<String> = e
        .into_iter()
        .map(|err| {
            let key = err.path.join(".");
            let source = err
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", err.kind)
            } else {
                format!("{key}: {}{source}", err.kind)
            }
        })
        .collect();
    ConfigError::Load(lines.join("; "))
}

impl Config {
    /// The figment of every layer, for `load` and for tests.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut f = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            f = f.merge(Toml::file_exact(path));
        }
        // `DATABASE_URL` is what the Rust database ecosystem expects; `GES_DATABASE__URL`
        // (merged after it) wins when both are set.
        if let Ok(url) = std::env::var("DATABASE_URL") {
            f = f.merge(Serialized::default("database.url", url));
        }
        // GES_CONFIG names the file; the GES_TENANT_* and GES_OAUTH_CODE variables carry
        // secrets for single commands (`tenants add`, `oauth exchange`), not configuration.
        f.merge(Env::prefixed("GES_").split("__").ignore(&[
            "config",
            "tenant_ekyte_api_key",
            "tenant_ekyte_mcp_token",
            "tenant_ghl_token",
            "oauth_code",
        ]))
    }

    /// Load every layer and validate. `file` comes from `--config`; `GES_CONFIG` is used when
    /// it is absent.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os("GES_CONFIG").map(PathBuf::from);
        let path = file.map(Path::to_path_buf).or(from_env);
        if let Some(p) = path.as_ref().filter(|p| !p.is_file()) {
            return Err(ConfigError::Load(format!(
                "config file {} does not exist or is not a file",
                p.display()
            )));
        }
        Self::from_figment(Self::figment(path.as_deref()))
    }

    pub fn from_figment(f: Figment) -> Result<Self, ConfigError> {
        let config: Config = f.extract().map_err(load_error)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let db = self.database.url.expose_secret();
        if !(db.starts_with("postgres://")
            || db.starts_with("postgresql://")
            || db.starts_with("sqlite:"))
        {
            return Err(invalid(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.queue.backend == QueueBackend::Amqp {
            let q = url::Url::parse(self.queue.url.expose_secret())
                .map_err(|e| invalid("queue.url", format!("not a URL: {e}")))?;
            if !matches!(q.scheme(), "amqp" | "amqps") {
                return Err(invalid("queue.url", "must be an amqp:// or amqps:// URL"));
            }
        }
        if self.queue.prefix.is_empty()
            || !self
                .queue
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "queue.prefix",
                "must be non-empty and hold only letters, digits, '-', '_' or '.'",
            ));
        }
        if !(1..=1000).contains(&self.queue.prefetch) {
            return Err(invalid("queue.prefetch", "must be between 1 and 1000"));
        }
        for rule in &self.ghl.agency_rules {
            rule.validate()?;
        }
        self.console.validate()?;
        if self.queue.max_attempts == 0 {
            return Err(invalid("queue.max_attempts", "must be at least 1"));
        }
        if self.queue.retry_delays.is_empty() {
            return Err(invalid("queue.retry_delays", "needs at least one delay"));
        }
        if self.queue.retry_delays.iter().any(|d| d.is_zero()) {
            return Err(invalid("queue.retry_delays", "delays must be above zero"));
        }
        if self.database.max_connections < 2 * u32::from(self.queue.prefetch) + 2 {
            return Err(invalid(
                "database.max_connections",
                format!(
                    "must be at least 2 × queue.prefetch + 2 = {} (each message in flight holds a connection for its contact lock)",
                    2 * u32::from(self.queue.prefetch) + 2
                ),
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        if self.ghl.rate_max == 0 {
            return Err(invalid("ghl.rate_max", "must be at least 1"));
        }
        if self.ghl.rate_interval.is_zero() {
            return Err(invalid("ghl.rate_interval", "must be above zero"));
        }
        if self.ghl.daily_limit == 0 {
            return Err(invalid("ghl.daily_limit", "must be at least 1"));
        }
        if !self.ekyte.mcp_path.starts_with('/') || self.ekyte.mcp_path.contains('?') {
            return Err(invalid(
                "ekyte.mcp_path",
                "must be a path starting with '/', without a query",
            ));
        }
        if !matches!(self.ekyte.automation_path.as_str(), "/n8n" | "/zapier") {
            return Err(invalid(
                "ekyte.automation_path",
                "must be \"/n8n\" or \"/zapier\"",
            ));
        }
        check_key("crypto.key", &self.crypto.key, true)?;
        for key in self.crypto.old_keys.values() {
            check_key("crypto.old_keys", key, false)?;
        }
        if self.crypto.key_id.is_empty() || self.crypto.old_keys.contains_key(&self.crypto.key_id) {
            return Err(invalid(
                "crypto.key_id",
                "must be non-empty and differ from the ids of crypto.old_keys",
            ));
        }
        parse_hh_mm(&self.scheduler.full_sync_at)
            .ok_or_else(|| invalid("scheduler.full_sync_at", "must be HH:MM (UTC)"))?;
        for (key, d) in [
            (
                "scheduler.incremental_every",
                self.scheduler.incremental_every,
            ),
            ("scheduler.poll_every", self.scheduler.poll_every),
        ] {
            if d < Duration::from_secs(1) {
                return Err(invalid(key, "must be at least 1s"));
            }
        }
        if !(1..=500).contains(&self.sync.page_size) {
            return Err(invalid(
                "sync.page_size",
                "must be between 1 and 500 (GHL's limit)",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.telemetry.level)
            .map_err(|e| invalid("telemetry.level", format!("not a log filter: {e}")))?;
        tracing_subscriber::EnvFilter::try_new(&self.telemetry.command_level)
            .map_err(|e| invalid("telemetry.command_level", format!("not a log filter: {e}")))?;
        let otlp = self.telemetry.otlp_endpoint.trim();
        if !otlp.is_empty() {
            let url = url::Url::parse(otlp).map_err(|e| {
                invalid(
                    "telemetry.otlp_endpoint",
                    format!("not a URL ({e}); the collector's traces URL, e.g. http://otel-collector:4318/v1/traces"),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL (OTLP over HTTP; gRPC is not built in)",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.telemetry.otlp_sample_ratio) {
            return Err(invalid(
                "telemetry.otlp_sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.telemetry.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        Ok(())
    }

    /// The crypto key, decoded; `None` when unset.
    pub fn crypto_key(&self) -> Option<[u8; 32]> {
        decode_key(&self.crypto.key)
    }

    /// The effective configuration with every secret replaced by `<redacted>` (or `<unset>`)
    /// and passwords in URLs masked.
    pub fn redacted(&self) -> toml::Table {
        let secret = |s: &SecretString| -> toml::Value {
            if s.expose_secret().is_empty() {
                "<unset>".into()
            } else {
                "<redacted>".into()
            }
        };
        // A table of secrets (old keys, collector headers): its names, every value redacted.
        let secrets = |m: &BTreeMap<String, SecretString>| {
            toml::Value::Table(m.iter().map(|(k, v)| (k.clone(), secret(v))).collect())
        };
        let dur = |d: &Duration| toml::Value::from(humantime::format_duration(*d).to_string());
        let mut t = toml::Table::new();
        let mut section = |name: &str, pairs: Vec<(&str, toml::Value)>| {
            t.insert(
                name.to_owned(),
                toml::Value::Table(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
            );
        };
        section(
            "database",
            vec![
                ("url", mask_url(self.database.url.expose_secret()).into()),
                (
                    "max_connections",
                    i64::from(self.database.max_connections).into(),
                ),
                ("acquire_timeout", dur(&self.database.acquire_timeout)),
            ],
        );
        section(
            "queue",
            vec![
                (
                    "backend",
                    format!("{:?}", self.queue.backend).to_lowercase().into(),
                ),
                ("url", mask_url(self.queue.url.expose_secret()).into()),
                ("prefix", self.queue.prefix.clone().into()),
                ("prefetch", i64::from(self.queue.prefetch).into()),
                ("fair_bulk", self.queue.fair_bulk.into()),
                ("max_attempts", i64::from(self.queue.max_attempts).into()),
                (
                    "retry_delays",
                    toml::Value::Array(self.queue.retry_delays.iter().map(dur).collect()),
                ),
                ("confirm_timeout", dur(&self.queue.confirm_timeout)),
            ],
        );
        section(
            "http",
            vec![
                ("bind", self.http.bind.to_string().into()),
                ("max_body_bytes", (self.http.max_body_bytes as i64).into()),
            ],
        );
        section(
            "ghl",
            vec![
                ("api_base", self.ghl.api_base.as_str().into()),
                (
                    "marketplace_base",
                    self.ghl.marketplace_base.as_str().into(),
                ),
                ("client_id", self.ghl.client_id.clone().into()),
                ("client_secret", secret(&self.ghl.client_secret)),
                ("app_id", self.ghl.app_id.clone().into()),
                ("redirect_uri", self.ghl.redirect_uri.as_str().into()),
                (
                    "scopes",
                    toml::Value::Array(self.ghl.scopes.iter().map(|s| s.clone().into()).collect()),
                ),
                (
                    "webhook_ed25519_key",
                    key_source(&self.ghl.webhook_ed25519_key).into(),
                ),
                (
                    "webhook_rsa_key",
                    key_source(&self.ghl.webhook_rsa_key).into(),
                ),
                ("replay_window", dur(&self.ghl.replay_window)),
                ("rate_max", i64::from(self.ghl.rate_max).into()),
                ("rate_interval", dur(&self.ghl.rate_interval)),
                ("daily_limit", i64::from(self.ghl.daily_limit).into()),
                (
                    "shared_window",
                    format!("{:?}", self.ghl.shared_window)
                        .to_lowercase()
                        .into(),
                ),
                ("request_timeout", dur(&self.ghl.request_timeout)),
                (
                    "agency_rules",
                    toml::Value::Array(
                        self.ghl
                            .agency_rules
                            .iter()
                            .map(|r| {
                                let mut t = toml::map::Map::new();
                                t.insert("company".into(), r.company.clone().into());
                                if let Some(like) = &r.like {
                                    t.insert("like".into(), like.clone().into());
                                }
                                if let Some(id) = r.ekyte_company {
                                    t.insert("ekyte_company".into(), (id as i64).into());
                                }
                                if let Some(settings) = &r.settings
                                    && let Ok(v) = toml::Value::try_from(settings)
                                {
                                    t.insert("settings".into(), v);
                                }
                                if let Some(k) = &r.ekyte_api_key {
                                    t.insert("ekyte_api_key".into(), secret(k));
                                }
                                if let Some(k) = &r.ekyte_mcp_token {
                                    t.insert("ekyte_mcp_token".into(), secret(k));
                                }
                                toml::Value::Table(t)
                            })
                            .collect(),
                    ),
                ),
            ],
        );
        section(
            "ekyte",
            vec![
                ("api_base", self.ekyte.api_base.as_str().into()),
                ("automation_path", self.ekyte.automation_path.clone().into()),
                ("mcp_path", self.ekyte.mcp_path.clone().into()),
                ("request_timeout", dur(&self.ekyte.request_timeout)),
            ],
        );
        section(
            "crypto",
            vec![
                ("key", secret(&self.crypto.key)),
                ("key_id", self.crypto.key_id.clone().into()),
                ("old_keys", secrets(&self.crypto.old_keys)),
            ],
        );
        section(
            "scheduler",
            vec![
                ("enabled", self.scheduler.enabled.into()),
                ("incremental_every", dur(&self.scheduler.incremental_every)),
                ("full_sync_at", self.scheduler.full_sync_at.clone().into()),
                ("poll_every", dur(&self.scheduler.poll_every)),
            ],
        );
        section(
            "sync",
            vec![
                ("incremental_overlap", dur(&self.sync.incremental_overlap)),
                ("page_size", i64::from(self.sync.page_size).into()),
                ("contact_lock_wait", dur(&self.sync.contact_lock_wait)),
                ("claim_stale_after", dur(&self.sync.claim_stale_after)),
                ("inbox_retention", dur(&self.sync.inbox_retention)),
                (
                    "sweep_batch",
                    i64::try_from(self.sync.sweep_batch)
                        .unwrap_or(i64::MAX)
                        .into(),
                ),
            ],
        );
        section(
            "worker",
            vec![("drain_timeout", dur(&self.worker.drain_timeout))],
        );
        section(
            "telemetry",
            vec![
                (
                    "format",
                    format!("{:?}", self.telemetry.format).to_lowercase().into(),
                ),
                ("level", self.telemetry.level.clone().into()),
                ("command_level", self.telemetry.command_level.clone().into()),
                (
                    "otlp_endpoint",
                    mask_url(&self.telemetry.otlp_endpoint).into(),
                ),
                ("otlp_headers", secrets(&self.telemetry.otlp_headers)),
                ("otlp_timeout", dur(&self.telemetry.otlp_timeout)),
                ("otlp_sample_ratio", self.telemetry.otlp_sample_ratio.into()),
                ("service_name", self.telemetry.service_name.clone().into()),
            ],
        );
        section(
            "console",
            vec![
                ("enabled", self.console.enabled.into()),
                ("session_ttl", dur(&self.console.session_ttl)),
                ("trusted_header", self.console.trusted_header.clone().into()),
                (
                    "accounts",
                    toml::Value::Array(
                        self.console
                            .accounts
                            .iter()
                            .map(|a| {
                                let mut t = toml::map::Map::new();
                                t.insert("user".into(), a.user.clone().into());
                                t.insert("password_hash".into(), secret(&a.password_hash));
                                t.insert(
                                    "role".into(),
                                    format!("{:?}", a.role).to_lowercase().into(),
                                );
                                t.insert(
                                    "tenants".into(),
                                    toml::Value::Array(
                                        a.tenants.iter().map(|x| x.clone().into()).collect(),
                                    ),
                                );
                                toml::Value::Table(t)
                            })
                            .collect(),
                    ),
                ),
            ],
        );
        t
    }
}

/// A list of humantime durations (`["5s", "2m"]`).
fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}

fn key_source(pem: &str) -> &'static str {
    if pem.trim().is_empty() {
        "<GHL's published key>"
    } else {
        "<configured PEM>"
    }
}

fn decode_key(s: &SecretString) -> Option<[u8; 32]> {
    let raw = s.expose_secret().trim();
    if raw.is_empty() {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
}

fn check_key(
    key: &'static str,
    value: &SecretString,
    may_be_empty: bool,
) -> Result<(), ConfigError> {
    if may_be_empty && value.expose_secret().trim().is_empty() {
        return Ok(());
    }
    // Never echo the value: it is a secret even when malformed.
    decode_key(value).map(|_| ()).ok_or_else(|| {
        invalid(
            key,
            "must be 32 bytes encoded as base64 (openssl rand -base64 32)",
        )
    })
}

/// `HH:MM` → (hour, minute).
pub fn parse_hh_mm(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some((h, m))
}

/// A URL with its password replaced by `***` (or the input unchanged when it does not parse,
/// minus anything between `://` and `@`).
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(s), Some(a)) if a > s => format!("{}://***{}", &raw[..s], &raw[a..]),
            _ => raw.to_owned(),
        },
    }
}

#[cfg(test)]
// figment::Jail's closures must return figment's (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_validate() {
        figment::Jail::expect_with(|_jail| {
            let c = Config::from_figment(Config::figment(None)).map_err(|e| e.to_string())?;
            assert_eq!(c.queue.prefetch, 8);
            assert_eq!(c.queue.retry_delays.len(), 4);
            assert_eq!(c.ekyte.automation_path, "/n8n");
            Ok(())
        });
    }

    #[test]
    fn a_bad_number_names_its_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GES_QUEUE__PREFETCH", "abc");
            let err = Config::from_figment(Config::figment(None))
                .unwrap_err()
                .to_string();
            assert!(err.contains("queue.prefetch"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GES_QUEUE__PREFETCH", "0");
            let err = Config::from_figment(Config::figment(None))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("queue.prefetch") && err.contains("between 1 and 1000"),
                "{err}"
            );
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("GES_CRYPTO__KEY", "c2hvcnQ=");
            let err = Config::from_figment(Config::figment(None))
                .unwrap_err()
                .to_string();
            assert!(err.contains("crypto.key"), "{err}");
            assert!(
                !err.contains("c2hvcnQ="),
                "the value must not be echoed: {err}"
            );
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("GES_CONSOLE__EKYTE_TASK_URL", "app.ekyte.com/{task}");
            let err = Config::from_figment(Config::figment(None))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("console.ekyte_task_url") && err.contains("http(s) URL"),
                "{err}"
            );
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("GES_QUEUEE__PREFETCH", "3");
            jail.set_env("GES_QUEUE__PREFECH", "3");
            let err = Config::from_figment(Config::figment(None))
                .unwrap_err()
                .to_string();
            assert!(err.contains("prefech"), "unknown keys are reported: {err}");
            Ok(())
        });
    }

    #[test]
    fn command_secrets_in_the_environment_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GES_TENANT_EKYTE_API_KEY", "k");
            jail.set_env("GES_OAUTH_CODE", "c");
            Config::from_figment(Config::figment(None)).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "ges.toml",
                "[queue]\nprefetch = 4\nbackend = \"memory\"\n[database]\nurl = \"sqlite://file.db\"\n",
            )?;
            jail.set_env("GES_QUEUE__PREFETCH", "8");
            jail.set_env("DATABASE_URL", "postgres://u:pw@db/x");
            let c = Config::from_figment(Config::figment(Some(Path::new("ges.toml"))))
                .map_err(|e| e.to_string())?;
            assert_eq!(c.queue.prefetch, 8, "env beats file");
            assert_eq!(c.queue.backend, QueueBackend::Memory, "file beats defaults");
            assert_eq!(
                c.database.url.expose_secret(),
                "postgres://u:pw@db/x",
                "DATABASE_URL beats the file"
            );
            jail.set_env("GES_DATABASE__URL", "postgres://other/y");
            let c = Config::from_figment(Config::figment(Some(Path::new("ges.toml"))))
                .map_err(|e| e.to_string())?;
            assert_eq!(
                c.database.url.expose_secret(),
                "postgres://other/y",
                "GES_ beats DATABASE_URL"
            );
            Ok(())
        });
    }

    #[test]
    fn redacted_view_holds_no_secret() {
        figment::Jail::expect_with(|jail| {
            let key = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
            jail.set_env("GES_CRYPTO__KEY", key);
            jail.set_env("GES_GHL__CLIENT_SECRET", "very-secret-client-secret");
            jail.set_env(
                "GES_DATABASE__URL",
                "postgres://ges:db-password-123@db:5432/ges",
            );
            jail.set_env("GES_QUEUE__URL", "amqp://ges:mq-password-456@mq:5672/%2f");
            let c = Config::from_figment(Config::figment(None)).map_err(|e| e.to_string())?;
            assert!(c.crypto_key().is_some());
            let shown = toml::to_string(&c.redacted()).map_err(|e| e.to_string())?;
            for secret in [
                key,
                "very-secret-client-secret",
                "db-password-123",
                "mq-password-456",
            ] {
                assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
            }
            assert!(shown.contains("<redacted>"));
            assert!(shown.contains("postgres://ges:***@db:5432/ges"), "{shown}");
            Ok(())
        });
    }

    #[test]
    fn the_default_scopes_are_the_ones_the_adapter_needs() {
        figment::Jail::expect_with(|_| {
            let c = Config::from_figment(Config::figment(None)).map_err(|e| e.to_string())?;
            let configured: std::collections::BTreeSet<_> = c.ghl.scopes.iter().collect();
            let needed = ghl::default_scopes();
            let needed: std::collections::BTreeSet<_> = needed.iter().collect();
            assert_eq!(configured, needed);
            for agency in ["oauth.readonly", "oauth.write", "locations.readonly"] {
                assert!(c.ghl.scopes.iter().any(|s| s == agency), "{agency}");
            }
            Ok(())
        });
    }

    #[test]
    fn agency_rules_take_one_form_and_keep_their_keys_secret() {
        figment::Jail::expect_with(|jail| {
            let load = |jail: &mut figment::Jail, rules: &str| {
                jail.create_file("rules.toml", rules)?;
                Ok::<_, figment::Error>(Config::from_figment(Config::figment(Some(Path::new(
                    "rules.toml",
                )))))
            };
            let direct = r#"
                [[ghl.agency_rules]]
                company = "agencyCo1"
                ekyte_company = 12
                ekyte_api_key = "rule-api-key-789"
                [ghl.agency_rules.settings]
                ekyte = { user_email = "ops@agency.test", task_type_id = 7 }
            "#;
            let c = load(jail, direct)?.map_err(|e| e.to_string())?;
            let rule = &c.ghl.agency_rules[0];
            assert_eq!(rule.ekyte_company, Some(12));
            let shown = toml::to_string(&c.redacted()).map_err(|e| e.to_string())?;
            assert!(!shown.contains("rule-api-key-789"), "{shown}");
            assert!(shown.contains("ekyte_company = 12"), "{shown}");
            for (bad, says) in [
                (
                    r#"[[ghl.agency_rules]]
                    company = "agencyCo1"
                    like = "acme"
                    ekyte_company = 12"#,
                    "exactly one of",
                ),
                (
                    r#"[[ghl.agency_rules]]
                    company = "agencyCo1""#,
                    "exactly one of",
                ),
                (
                    r#"[[ghl.agency_rules]]
                    company = "agencyCo1"
                    ekyte_company = 12"#,
                    "ekyte.user_email",
                ),
                (
                    r#"[[ghl.agency_rules]]
                    company = "agencyCo1"
                    like = "acme"
                    ekyte_api_key = "k""#,
                    "go with `ekyte_company`",
                ),
            ] {
                let err = load(jail, bad)?.expect_err(bad).to_string();
                assert!(err.contains(says), "{bad}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn masks_urls() {
        assert_eq!(
            mask_url("amqp://guest:guest@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(mask_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(parse_hh_mm("03:00"), Some((3, 0)));
        assert_eq!(parse_hh_mm("3:00"), None);
        assert_eq!(parse_hh_mm("24:00"), None);
    }
}
