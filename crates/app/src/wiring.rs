//! The composition root: the only place that names concrete adapters. Everything else speaks
//! ports.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

use engine::{Engine, Ports, Settings};
use ports::store::{
    AuditLog, ContactLocks, CredentialStore, DeadLetterStore, Inbox, LinkStore, RateWindow,
    RunStore, StoreHealth, TenantStore,
};
use ports::{Clock, SystemClock};
use store::{DataKey, Keyring, Store, StoreOptions};

use crate::config::{Config, QueueBackend, SharedWindow};
use crate::ingress::{HealthState, OAuthState, WebhookState};
use crate::metrics::Telemetry;
use crate::oauth_state::StateSigner;
use crate::queue::Broker;
use crate::queue::amqp::{AmqpBroker, AmqpSettings};
use crate::queue::memory::MemoryBroker;
use crate::worker::{RetrySchedule, Worker};

/// The keyring for credentials at rest. Without `crypto.key`, commands that store or read
/// credentials cannot run; `ephemeral` makes a throw-away key (the demo only).
pub fn keyring(config: &Config, ephemeral: bool) -> anyhow::Result<Keyring> {
    if config.crypto.key.expose_secret().trim().is_empty() {
        if ephemeral {
            let key = DataKey::generate("ephemeral").context("cannot generate a key")?;
            return Ok(Keyring::new(key));
        }
        bail!(
            "crypto.key is not set: credentials are encrypted at rest and need a key. Generate one with `openssl rand -base64 32` and set GES_CRYPTO__KEY"
        );
    }
    let current = DataKey::from_base64(config.crypto.key_id.clone(), &config.crypto.key)
        .context("crypto.key")?;
    let mut ring = Keyring::new(current);
    for (id, key) in &config.crypto.old_keys {
        ring = ring
            .with_previous(DataKey::from_base64(id.clone(), key).context("crypto.old_keys")?)
            .context("crypto.old_keys")?;
    }
    Ok(ring)
}

/// Connect to the database named by `database.url` (schema not checked).
pub async fn connect_store(config: &Config, ring: Keyring) -> anyhow::Result<Arc<Store>> {
    let url = config.database.url.expose_secret();
    let options = StoreOptions {
        max_connections: Some(config.database.max_connections),
        acquire_timeout: config.database.acquire_timeout,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(url, ring, options)
        .await
        .with_context(|| {
            format!(
                "cannot connect to the database {} (database.url); is it running?",
                crate::config::mask_url(url)
            )
        })?;
    Ok(Arc::new(store))
}

pub fn ghl_config(config: &Config) -> ghl::GhlAdapterConfig {
    let g = &config.ghl;
    ghl::GhlAdapterConfig {
        api_base: g.api_base.clone(),
        marketplace_base: g.marketplace_base.clone(),
        client_id: g.client_id.clone(),
        client_secret: g.client_secret.clone(),
        app_id: g.app_id.clone(),
        redirect_uri: Some(g.redirect_uri.clone()),
        scopes: g.scopes.clone(),
        request_timeout: g.request_timeout,
        rate: ghl::RateConfig {
            max: g.rate_max,
            interval: g.rate_interval,
            daily_limit: u64::from(g.daily_limit),
            ..ghl::RateConfig::default()
        },
        ..ghl::GhlAdapterConfig::default()
    }
}

pub fn webhook_config(config: &Config) -> ghl::webhook::WebhookConfig {
    let nonempty = |s: &str| {
        if s.trim().is_empty() {
            vec![]
        } else {
            vec![s.to_owned()]
        }
    };
    ghl::webhook::WebhookConfig {
        ed25519_keys: nonempty(&config.ghl.webhook_ed25519_key),
        rsa_keys: nonempty(&config.ghl.webhook_rsa_key),
        replay_window: config.ghl.replay_window,
        ..ghl::webhook::WebhookConfig::default()
    }
}

pub fn ekyte_config(config: &Config) -> ekyte::EkyteConfig {
    let e = &config.ekyte;
    ekyte::EkyteConfig {
        base_url: e.api_base.to_string(),
        automation: if e.automation_path == "/zapier" {
            ekyte::AutomationApi::Zapier
        } else {
            ekyte::AutomationApi::N8n
        },
        mcp_path: e.mcp_path.clone(),
        request_timeout: e.request_timeout,
        ..ekyte::EkyteConfig::default()
    }
}

/// RabbitMQ on `queue.url`, with `queue.prefix`'s queues declared.
pub async fn amqp_broker(config: &Config) -> anyhow::Result<Arc<AmqpBroker>> {
    let url = config.queue.url.expose_secret();
    let b = AmqpBroker::connect(
        config.queue.url.clone(),
        AmqpSettings::new(
            config.queue.prefix.clone(),
            config.queue.retry_delays.clone(),
            config.queue.confirm_timeout,
        ),
    )
    .await
    .with_context(|| {
        format!(
            "cannot connect to RabbitMQ at {} (queue.url); is it running? (`rabbitmq-server -detached`)",
            crate::config::mask_url(url)
        )
    })?;
    b.declare().await.context("cannot declare the queues")?;
    Ok(Arc::new(b))
}

/// Delete `queue.prefix`'s queues through a fresh connection (a worker closes its own
/// broker when it stops). For runs with a prefix of their own: the demo, the benchmarks.
pub async fn delete_amqp_queues(config: &Config) -> anyhow::Result<()> {
    let b = amqp_broker(config).await?;
    b.delete_topology().await?;
    b.close().await;
    Ok(())
}

/// The broker `queue.backend` names, connected and declared.
pub async fn broker(config: &Config) -> anyhow::Result<Arc<dyn Broker>> {
    match config.queue.backend {
        QueueBackend::Memory => Ok(Arc::new(MemoryBroker::new())),
        QueueBackend::Amqp => Ok(amqp_broker(config).await?),
    }
}

/// Everything a process of this service runs on.
pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub ghl: ghl::GhlAdapter,
    pub ekyte: ekyte::EkyteAdapter,
    pub broker: Arc<dyn Broker>,
    pub engine: Arc<Engine>,
    pub clock: Arc<dyn Clock>,
}

impl App {
    /// Build from configuration. `broker` overrides `queue.backend` (the demo picks one).
    pub async fn build(
        config: Config,
        store: Arc<Store>,
        broker: Arc<dyn Broker>,
    ) -> anyhow::Result<Self> {
        store
            .ensure_schema_current()
            .await
            .context("the database schema is not current: run `ghl-ekyte-sync migrate`")?;
        let credentials: Arc<dyn CredentialStore> = store.clone();
        let window = match config.ghl.shared_window {
            SharedWindow::On => true,
            SharedWindow::Off => false,
            SharedWindow::Auto => store.is_postgres(),
        };
        let window = window.then(|| store.clone() as Arc<dyn RateWindow>);
        let ghl = ghl::GhlAdapter::with_window(ghl_config(&config), credentials.clone(), window)
            .context("GHL adapter configuration ([ghl])")?;
        let ekyte = ekyte::EkyteAdapter::new(ekyte_config(&config), credentials)
            .context("eKyte adapter configuration ([ekyte])")?;
        let links: Arc<dyn LinkStore> = store.clone();
        let runs: Arc<dyn RunStore> = store.clone();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ports = Ports {
            ghl: Arc::new(ghl.clone()),
            ekyte: Arc::new(ekyte.clone()),
            changes: Arc::new(
                ekyte
                    .poller(links.clone(), runs.clone())
                    .with_tenants(store.clone() as Arc<dyn TenantStore>),
            ),
            tenants: store.clone() as Arc<dyn TenantStore>,
            links,
            locks: store.clone() as Arc<dyn ContactLocks>,
            audit: store.clone() as Arc<dyn AuditLog>,
            inbox: store.clone() as Arc<dyn Inbox>,
            runs,
            publisher: broker.clone(),
            clock: clock.clone(),
        };
        let settings = Settings {
            lock_wait: config.sync.contact_lock_wait,
            claim_stale_after: config.sync.claim_stale_after,
            incremental_overlap: config.sync.incremental_overlap,
            page_size: config.sync.page_size,
            business_ttl: Duration::from_secs(600),
            prefetch: config.sync.prefetch,
            appointment_window: config.sync.appointments_from_calendars.then(|| {
                engine::AppointmentWindow {
                    past: chrono::Duration::from_std(config.sync.appointments_past)
                        .unwrap_or(chrono::Duration::MAX),
                    future: chrono::Duration::from_std(config.sync.appointments_future)
                        .unwrap_or(chrono::Duration::MAX),
                }
            }),
            sweep_batch: (config.sync.sweep_batch > 0).then_some(config.sync.sweep_batch),
        };
        Ok(Self {
            engine: Arc::new(Engine::new(ports, settings)),
            config,
            store,
            ghl,
            ekyte,
            broker,
            clock,
        })
    }

    pub fn worker(&self, consumer_tag: String) -> Worker {
        Worker {
            engine: self.engine.clone(),
            broker: self.broker.clone(),
            dead_letters: self.store.clone() as Arc<dyn DeadLetterStore>,
            retry: RetrySchedule {
                delays: self.config.queue.retry_delays.clone(),
                max_attempts: self.config.queue.max_attempts,
            },
            prefetch: self.config.queue.prefetch,
            fair_bulk: self.config.queue.fair_bulk,
            consumer_tag,
            drain_timeout: self.config.worker.drain_timeout,
            stats: Arc::default(),
            observer: Some(Arc::new(crate::observe::Observer::new(
                self.store.clone(),
                self.ghl.budgets(),
                self.clock.clone(),
                self.config.worker.observe_every,
            ))),
        }
    }

    pub fn telemetry(&self) -> Arc<Telemetry> {
        Arc::new(Telemetry {
            handle: crate::metrics::prometheus(),
            budgets: Some(self.ghl.budgets()),
            tenants: Some(self.store.clone()),
            runs: Some(self.store.clone()),
            broker: Some(self.broker.clone()),
            clock: self.clock.clone(),
        })
    }

    pub fn state_signer(&self) -> Arc<StateSigner> {
        // The state key is derived from the credentials key, so it rotates with it and is
        // never configured separately.
        let seed = self.config.crypto.key.expose_secret().as_bytes().to_vec();
        let key = if seed.is_empty() {
            uuid::Uuid::new_v4().as_bytes().to_vec()
        } else {
            seed
        };
        Arc::new(StateSigner::new(key, chrono::Duration::hours(1)))
    }

    pub fn oauth_state(&self) -> OAuthState {
        OAuthState {
            oauth: self.ghl.oauth(),
            tenants: self.store.clone(),
            credentials: self.store.clone(),
            agencies: self.agencies(),
            signer: self.state_signer(),
            ghl: Some(self.ghl.clone()),
            console: self.config.console.enabled,
        }
    }

    /// Where the locations of an agency install go (the callback, the lifecycle webhooks).
    pub fn agencies(&self) -> crate::agency::Agencies {
        crate::agency::Agencies {
            tenants: self.store.clone(),
            credentials: self.store.clone(),
            agencies: self.store.clone(),
            oauth: self.ghl.oauth(),
            app_id: self.config.ghl.app_id.clone(),
            rules: self.config.ghl.agency_rules.clone(),
            ekyte: Some(ekyte_config(&self.config)),
            ghl: Some(self.ghl.clone()),
            token_margin: ghl_config(&self.config).refresh_margin,
        }
    }

    pub fn health(&self) -> HealthState {
        let broker = self.broker.clone();
        HealthState {
            store: self.store.clone() as Arc<dyn StoreHealth>,
            broker_ready: Arc::new(move || broker.ready()),
            telemetry: self.telemetry(),
        }
    }

    /// The operator console's state (`console.enabled`), reading through the same ports.
    pub fn console(&self) -> crate::console::ConsoleState {
        let key = self.config.crypto.key.expose_secret().as_bytes().to_vec();
        crate::console::ConsoleState {
            gate: Arc::new(crate::console::Gate::new(&self.config.console, &key)),
            tenants: self.store.clone(),
            credentials: self.store.clone(),
            agencies: self.store.clone(),
            dead_letters: self.store.clone(),
            runs: self.store.clone(),
            audit: self.store.clone(),
            publisher: self.broker.clone(),
            clock: self.clock.clone(),
            links: self.store.clone(),
            ghl: Arc::new(self.ghl.clone()),
            ekyte: Arc::new(self.ekyte.clone()),
            engine: self.engine.clone(),
            schedule: crate::console::Schedule {
                incremental: self.config.scheduler.incremental_every,
                full: std::time::Duration::from_secs(24 * 3600),
                poll: self.config.scheduler.poll_every,
            },
            install_link: {
                let oauth = self.ghl.oauth();
                let signer = self.state_signer();
                Arc::new(move |f: &crate::oauth_state::InstallFor| {
                    let now = chrono::Utc::now();
                    let state = match f {
                        crate::oauth_state::InstallFor::Tenant(t) => signer.sign(t, now),
                        crate::oauth_state::InstallFor::Agency => signer.sign_agency(now),
                    };
                    oauth.authorize_url(&state).ok().map(String::from)
                })
            },
            mapper: Arc::new(crate::admin::Mapper {
                tenants: self.store.clone(),
                credentials: self.store.clone(),
                agencies: self.store.clone(),
                ekyte: ekyte_config(&self.config),
            }),
            observations: self.store.clone(),
            broker: self.broker.clone(),
            deep_links: crate::console::DeepLinks::new(&self.config.console),
        }
    }

    /// The ingress router with everything wired (and the console, when enabled).
    pub fn ingress(&self) -> anyhow::Result<axum::Router> {
        let verifier = ghl::webhook::WebhookVerifier::new(&webhook_config(&self.config))
            .context("webhook keys ([ghl] webhook_ed25519_key / webhook_rsa_key)")?;
        let console = self
            .config
            .console
            .enabled
            .then(|| crate::console::router(self.console()));
        let router = crate::ingress::router(
            WebhookState {
                verifier: Arc::new(verifier),
                tenants: self.store.clone(),
                recent: Arc::default(),
                inbox: Arc::new(crate::ingress::InboxWrites::new(self.store.clone())),
                publisher: self.broker.clone(),
                credentials: self.store.clone(),
                clock: self.clock.clone(),
                audit: self.store.clone(),
                agencies: self.agencies(),
                ghl: Some(self.ghl.clone()),
            },
            Some(self.oauth_state()),
            self.health(),
            self.config.http.max_body_bytes,
        );
        Ok(match console {
            Some(console) => router.merge(console),
            None => router,
        })
    }
}

/// A secret read from an option or the environment, never from a plain argument in logs.
pub fn secret(value: Option<String>) -> Option<SecretString> {
    value.filter(|v| !v.is_empty()).map(SecretString::from)
}
