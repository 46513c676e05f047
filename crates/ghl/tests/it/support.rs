//! Test helpers: an in-memory credential store, tenants, and a started GHL simulator with a
//! location, a Private Integration Token and an adapter pointed at it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use domain::{EkyteCompanyId, LocationId, Tenant, TenantId, TenantSettings};
use ghl::{GhlAdapter, GhlAdapterConfig, RateConfig, RetryPolicy};
use ports::store::{
    Credential, CredentialSecret, CredentialStore, DuePredicate, NewCredential, Provider,
    RefreshError, Refresher,
};
use ports::{Priority, Scope, StoreError};
use sandbox::ghl::{GhlConfig as SandboxConfig, GhlSandbox, LocationSpec, PitSpec};
use secrecy::SecretString;
use url::Url;

/// A `CredentialStore` in memory: versions bump on every write, and the credential lock is a
/// per-(tenant, provider) async mutex, as the SQLite store does within one process.
type Key = (TenantId, Provider);

#[derive(Default)]
pub struct MemoryCredentials {
    rows: std::sync::Mutex<HashMap<Key, Credential>>,
    locks: std::sync::Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// How many times a refresher ran.
    pub refreshes: AtomicUsize,
}

impl MemoryCredentials {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn write(&self, tenant: &TenantId, provider: Provider, c: &NewCredential) -> Credential {
        let mut rows = self.rows.lock().unwrap();
        let version = rows
            .get(&(tenant.clone(), provider))
            .map_or(1, |c| c.version + 1);
        let stored = Credential {
            tenant: tenant.clone(),
            provider,
            secret: c.secret.clone(),
            expires_at: c.expires_at,
            version,
            updated_at: Utc::now(),
        };
        rows.insert((tenant.clone(), provider), stored.clone());
        stored
    }

    pub fn current(&self, tenant: &TenantId) -> Option<Credential> {
        self.rows
            .lock()
            .unwrap()
            .get(&(tenant.clone(), Provider::Ghl))
            .cloned()
    }
}

#[async_trait]
impl CredentialStore for MemoryCredentials {
    async fn all(
        &self,
        provider: Provider,
    ) -> Result<Vec<(TenantId, ports::store::CredentialRead)>, StoreError> {
        let mut all: Vec<_> = self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, p), _)| *p == provider)
            .map(|((t, _), c)| (t.clone(), Ok(c.clone())))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn get(&self, tenant: &TenantId, provider: Provider) -> Result<Credential, StoreError> {
        self.rows
            .lock()
            .unwrap()
            .get(&(tenant.clone(), provider))
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                what: format!("credential of {tenant}"),
            })
    }

    async fn put(
        &self,
        tenant: &TenantId,
        provider: Provider,
        credential: &NewCredential,
    ) -> Result<Credential, StoreError> {
        Ok(self.write(tenant, provider, credential))
    }

    async fn delete(&self, tenant: &TenantId, provider: Provider) -> Result<(), StoreError> {
        self.rows
            .lock()
            .unwrap()
            .remove(&(tenant.clone(), provider));
        Ok(())
    }

    async fn with_credential_lock(
        &self,
        tenant: &TenantId,
        provider: Provider,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError> {
        let lock = self
            .locks
            .lock()
            .unwrap()
            .entry((tenant.clone(), provider))
            .or_default()
            .clone();
        let _held = lock.lock().await;
        let current = self.get(tenant, provider).await?;
        if !due(&current) {
            return Ok(current);
        }
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let new = refresh(current).await?;
        Ok(self.write(tenant, provider, &new))
    }
}

pub fn tenant(id: &str, location: &str) -> Arc<Tenant> {
    Arc::new(Tenant {
        id: TenantId::parse(id).unwrap(),
        name: id.to_owned(),
        location_id: LocationId::parse(location).unwrap(),
        ekyte_company_id: EkyteCompanyId::new(1).unwrap(),
        active: true,
        settings: TenantSettings {
            custom_fields: vec!["cfTier".to_owned()],
            ..TenantSettings::default()
        },
        install: Default::default(),
    })
}

pub fn scope(tenant: &Arc<Tenant>) -> Scope {
    Scope::new(tenant.clone(), Priority::RealTime)
}

/// Test-sized retries: quick, but still several.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
    }
}

/// An adapter config aimed at `base`, with quick retries and GHL's real limits.
pub fn adapter_config(base: &str) -> GhlAdapterConfig {
    GhlAdapterConfig {
        api_base: Url::parse(base).unwrap(),
        client_id: "sandbox-client".to_owned(),
        client_secret: SecretString::from("sandbox-secret".to_owned()),
        app_id: "test-app".to_owned(),
        redirect_uri: Some(Url::parse("http://127.0.0.1:9/oauth/callback").unwrap()),
        request_timeout: Duration::from_secs(10),
        retry: quick_retry(),
        rate: RateConfig::default(),
        ..GhlAdapterConfig::default()
    }
}

pub const LOCATION: &str = "locSandbox0000000001";
pub const APP: &str = "testapp";

/// The rate tests measure throughput: while one runs, no other test of this binary does.
/// Every other simulator or wiremock test holds the shared side for its whole run.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub type MachineShare = tokio::sync::RwLockReadGuard<'static, ()>;

pub async fn share_machine() -> MachineShare {
    MACHINE.read().await
}

pub async fn whole_machine() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// A simulator with one location, a PIT for it (the app `testapp`) and an adapter.
pub struct World {
    pub ghl: GhlSandbox,
    pub store: Arc<MemoryCredentials>,
    pub adapter: GhlAdapter,
    pub tenant: Arc<Tenant>,
    /// `None` for the rate tests, which hold the whole machine instead.
    _share: Option<MachineShare>,
    /// Keeps the simulator's own runtime alive (rate tests).
    _runtime: Option<tokio::sync::oneshot::Sender<()>>,
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(SandboxConfig::default(), |c| c).await
    }

    pub async fn start_with(
        config: SandboxConfig,
        adapt: impl FnOnce(GhlAdapterConfig) -> GhlAdapterConfig,
    ) -> Self {
        Self::start_inner(config, adapt, Some(share_machine().await)).await
    }

    /// For a test that holds [`whole_machine`] already. The simulator gets a runtime of its
    /// own (one thread), as a remote server would: its work does not queue behind the
    /// client's tasks on the test's runtime.
    pub async fn start_alone(config: SandboxConfig) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let ghl = GhlSandbox::start(config).await.unwrap();
                let _ = tx.send(ghl);
                // Serve until the world is dropped.
                let _ = stopped.await;
            });
        });
        let ghl = rx.await.unwrap();
        let mut w = Self::with_sandbox(ghl, |c| c, None).await;
        w._runtime = Some(stop);
        w
    }

    async fn start_inner(
        config: SandboxConfig,
        adapt: impl FnOnce(GhlAdapterConfig) -> GhlAdapterConfig,
        share: Option<MachineShare>,
    ) -> Self {
        let ghl = GhlSandbox::start(config).await.unwrap();
        Self::with_sandbox(ghl, adapt, share).await
    }

    async fn with_sandbox(
        ghl: GhlSandbox,
        adapt: impl FnOnce(GhlAdapterConfig) -> GhlAdapterConfig,
        share: Option<MachineShare>,
    ) -> Self {
        ghl.create_location(LocationSpec {
            id: LOCATION.to_owned(),
            ..LocationSpec::default()
        })
        .unwrap();
        let pit = ghl
            .register_pit(PitSpec {
                location_id: Some(LOCATION.to_owned()),
                app_id: APP.to_owned(),
                scopes: ghl::default_scopes(),
                ..PitSpec::default()
            })
            .unwrap();
        let store = MemoryCredentials::new();
        let tenant = tenant("acme", LOCATION);
        store
            .put(
                &tenant.id,
                Provider::Ghl,
                &NewCredential {
                    secret: CredentialSecret::GhlPrivate {
                        token: SecretString::from(pit.clone()),
                    },
                    expires_at: None,
                },
            )
            .await
            .unwrap();
        let adapter = GhlAdapter::new(adapt(adapter_config(&ghl.base_url())), store.clone())
            .expect("adapter");
        Self {
            ghl,
            store,
            adapter,
            tenant,
            _share: share,
            _runtime: None,
        }
    }

    pub fn scope(&self) -> Scope {
        scope(&self.tenant)
    }

    /// Another adapter on the same simulator and store (a second replica).
    pub fn replica(&self, adapt: impl FnOnce(GhlAdapterConfig) -> GhlAdapterConfig) -> GhlAdapter {
        GhlAdapter::new(
            adapt(adapter_config(&self.ghl.base_url())),
            self.store.clone(),
        )
        .expect("adapter")
    }
}
