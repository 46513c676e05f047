//! What every handler of one eKyte simulator shares: the store, the simulated clock, counters,
//! faults, rate limits and the runtime settings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use super::config::{EkyteConfig, RateLimitConfig, RuntimeSettings};
use super::dates::to_tick;
use super::store::Store;
use crate::common::{Counters, Faults};

/// Wall-clock time plus an offset the control API can move forward, so tests can step past the
/// 15-minute polling window without sleeping.
#[derive(Debug, Default)]
pub(crate) struct SimClock {
    offset_ms: AtomicI64,
}

impl SimClock {
    pub fn now(&self) -> DateTime<Utc> {
        to_tick(Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed)))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn offset(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            u64::try_from(self.offset_ms.load(Ordering::Relaxed)).unwrap_or(0),
        )
    }
}

#[derive(Debug, Default)]
struct LimiterState {
    config: Option<RateLimitConfig>,
    windows: HashMap<String, (Instant, u32)>,
}

/// Fixed-window request budget per credential (real time, not the simulated clock: a client's
/// backoff is measured in real time).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    state: Mutex<LimiterState>,
}

impl RateLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, config: Option<RateLimitConfig>) {
        let mut s = self.lock();
        s.config = config;
        s.windows.clear();
    }

    pub fn config(&self) -> Option<RateLimitConfig> {
        self.lock().config
    }

    /// Spend one request of `credential`'s budget; false when it is exhausted.
    pub fn admit(&self, credential: &str) -> bool {
        let mut s = self.lock();
        let Some(cfg) = s.config else { return true };
        let window = std::time::Duration::from_millis(cfg.window_ms);
        let now = Instant::now();
        let slot = s.windows.entry(credential.to_owned()).or_insert((now, 0));
        if now.duration_since(slot.0) >= window {
            *slot = (now, 0);
        }
        if slot.1 >= cfg.requests {
            return false;
        }
        slot.1 += 1;
        true
    }
}

#[derive(Debug)]
pub(crate) struct Sim {
    store: RwLock<Store>,
    pub clock: SimClock,
    pub counters: Counters,
    pub faults: Faults,
    pub limiter: RateLimiter,
    settings: RwLock<RuntimeSettings>,
    /// Cancelled on shutdown so injected hangs end instead of holding the server open.
    pub stop: CancellationToken,
}

impl Sim {
    pub fn new(config: &EkyteConfig) -> Self {
        let limiter = RateLimiter::default();
        limiter.set(config.rate_limit);
        Self {
            store: RwLock::new(Store::new()),
            clock: SimClock::default(),
            counters: Counters::new(),
            faults: Faults::new(config.faults.clone()),
            limiter,
            settings: RwLock::new(RuntimeSettings::from(config)),
            stop: CancellationToken::new(),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn settings(&self) -> RuntimeSettings {
        *self.settings.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn update_settings(&self, f: impl FnOnce(&mut RuntimeSettings)) {
        f(&mut self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner));
    }
}
