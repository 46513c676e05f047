//! Fault injection: latency with a long tail, server errors, timeouts and 429 bursts.
//!
//! Decisions come from a seeded RNG, so a test that sets a seed sees the same faults in the
//! same order (for one request order). Each simulator applies a [`FaultDecision`] in its own
//! middleware, because the error bodies differ between vendors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::RouteKey;

/// How long each request waits before it is handled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyProfile {
    /// Added to every request.
    pub base_ms: u64,
    /// Uniform extra in `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// Probability that a request lands in the long tail.
    pub tail_probability: f64,
    /// Extra delay of a tail request.
    pub tail_ms: u64,
}

/// Per-route overrides of the global rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteFault {
    pub error_rate: Option<f64>,
    pub timeout_rate: Option<f64>,
    pub burst_429_probability: Option<f64>,
}

/// The whole fault set of one simulator. The default injects nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    pub seed: u64,
    pub latency: LatencyProfile,
    /// Probability of a 5xx answer (500, 502 or 503) on any route.
    pub error_rate: f64,
    /// Probability that a request hangs for `timeout_ms` and then gets a 504.
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    /// Probability that a request starts a burst of injected 429s.
    pub burst_429_probability: f64,
    /// How many requests (the starting one included) a burst answers with 429.
    pub burst_429_length: u32,
    /// Overrides keyed by `"METHOD /route"` as in the counters.
    pub routes: BTreeMap<String, RouteFault>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            seed: 0x5eed,
            latency: LatencyProfile::default(),
            error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_ms: 30_000,
            burst_429_probability: 0.0,
            burst_429_length: 5,
            routes: BTreeMap::new(),
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// Handle it normally.
    Pass,
    /// Answer with this 5xx status without touching any data.
    ServerError(u16),
    /// Answer 429 (an injected one, counted apart from limits the caller really exceeded).
    RateLimited,
    /// Wait this long, then answer 504 without touching any data.
    Hang(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultDecision {
    pub delay: Duration,
    pub outcome: FaultOutcome,
}

#[derive(Debug)]
struct State {
    config: FaultConfig,
    rng: StdRng,
    burst_left: u32,
}

/// Shared, reconfigurable fault injector.
#[derive(Debug, Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(FaultConfig::default())
    }
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rng: StdRng::seed_from_u64(config.seed),
                config,
                burst_left: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replace the configuration (and reseed).
    pub fn set(&self, config: FaultConfig) {
        let mut s = self.lock();
        s.rng = StdRng::seed_from_u64(config.seed);
        s.config = config;
        s.burst_left = 0;
    }

    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// Decide the fate of one request on `route`.
    pub fn decide(&self, route: &RouteKey) -> FaultDecision {
        let mut guard = self.lock();
        let s = &mut *guard;
        let c = &s.config;
        let over = c.routes.get(&route.to_string());
        let error_rate = over.and_then(|o| o.error_rate).unwrap_or(c.error_rate);
        let timeout_rate = over.and_then(|o| o.timeout_rate).unwrap_or(c.timeout_rate);
        let burst_p = over
            .and_then(|o| o.burst_429_probability)
            .unwrap_or(c.burst_429_probability);

        let mut delay_ms = c.latency.base_ms;
        if c.latency.jitter_ms > 0 {
            delay_ms += s.rng.gen_range(0..=c.latency.jitter_ms);
        }
        if c.latency.tail_probability > 0.0 && s.rng.gen_bool(c.latency.tail_probability.min(1.0)) {
            delay_ms += c.latency.tail_ms;
        }
        let delay = Duration::from_millis(delay_ms);

        let outcome = if s.burst_left > 0 {
            s.burst_left -= 1;
            FaultOutcome::RateLimited
        } else if burst_p > 0.0 && s.rng.gen_bool(burst_p.min(1.0)) {
            s.burst_left = c.burst_429_length.saturating_sub(1);
            FaultOutcome::RateLimited
        } else if timeout_rate > 0.0 && s.rng.gen_bool(timeout_rate.min(1.0)) {
            FaultOutcome::Hang(Duration::from_millis(c.timeout_ms))
        } else if error_rate > 0.0 && s.rng.gen_bool(error_rate.min(1.0)) {
            let codes = [500, 502, 503];
            FaultOutcome::ServerError(codes[s.rng.gen_range(0..codes.len())])
        } else {
            FaultOutcome::Pass
        };
        FaultDecision { delay, outcome }
    }

    /// A uniform draw in `[0, 1)` from the same seeded stream (for webhook drop/duplicate
    /// decisions that live outside the request path).
    pub fn draw(&self) -> f64 {
        self.lock().rng.r#gen::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_injects_nothing() {
        let f = Faults::default();
        let r = RouteKey::new("GET", "/x");
        for _ in 0..1000 {
            assert_eq!(
                f.decide(&r),
                FaultDecision {
                    delay: Duration::ZERO,
                    outcome: FaultOutcome::Pass
                }
            );
        }
    }

    #[test]
    fn error_rate_is_roughly_honoured_and_route_overrides_win() {
        let f = Faults::new(FaultConfig {
            error_rate: 0.2,
            routes: [(
                "GET /quiet".to_owned(),
                RouteFault {
                    error_rate: Some(0.0),
                    ..RouteFault::default()
                },
            )]
            .into(),
            ..FaultConfig::default()
        });
        let loud = RouteKey::new("GET", "/loud");
        let errors = (0..10_000)
            .filter(|_| matches!(f.decide(&loud).outcome, FaultOutcome::ServerError(_)))
            .count();
        assert!((1_600..2_400).contains(&errors), "{errors} errors of 10000");
        let quiet = RouteKey::new("GET", "/quiet");
        assert!((0..1000).all(|_| f.decide(&quiet).outcome == FaultOutcome::Pass));
    }

    #[test]
    fn a_burst_answers_429_for_its_whole_length() {
        let f = Faults::new(FaultConfig {
            burst_429_probability: 1.0,
            burst_429_length: 3,
            ..FaultConfig::default()
        });
        let r = RouteKey::new("GET", "/x");
        for _ in 0..9 {
            assert_eq!(f.decide(&r).outcome, FaultOutcome::RateLimited);
        }
        f.set(FaultConfig::default());
        assert_eq!(f.decide(&r).outcome, FaultOutcome::Pass);
    }
}
