//! GHL's rate limits (API.md §8): a burst limit and a daily budget per (app, location).
//!
//! The burst limit is, by default, a **sliding window log**: a request is admitted when fewer
//! than `max` admitted requests of the same bucket arrived in the last `interval_ms`. This is
//! the strictest reading of "100 requests per 10 seconds": a client that never sends more than
//! `max` requests over any `interval` is never refused, and one that sends `max` at the end of
//! a window and `max` more at the start of the next is. [`RateWindow::Fixed`] counts per fixed
//! window instead (starting at the first request after the previous window ended). The daily budget is a fixed
//! window of `daily_window_ms` starting at the bucket's first request. Refused requests do
//! not consume budget, so a client that backs off recovers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::config::{RateLimitConfig, RateWindow};

/// The five headers every rate-limited answer carries ([AUTHMD] via API.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit_daily: u64,
    pub daily_remaining: u64,
    pub interval_ms: u64,
    pub max: u32,
    pub remaining: u32,
}

impl RateHeaders {
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut put = |name: &'static str, v: u64| {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(v));
        };
        put("x-ratelimit-limit-daily", self.limit_daily);
        put("x-ratelimit-daily-remaining", self.daily_remaining);
        put("x-ratelimit-interval-milliseconds", self.interval_ms);
        put("x-ratelimit-max", u64::from(self.max));
        put("x-ratelimit-remaining", u64::from(self.remaining));
    }
}

#[derive(Debug)]
struct Bucket {
    /// Admission times inside the current window (sliding), or of the current fixed window.
    window: VecDeque<Instant>,
    window_start: Instant,
    day_start: Instant,
    day_count: u64,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            window: VecDeque::new(),
            window_start: now,
            day_start: now,
            day_count: 0,
        }
    }

    fn roll(&mut self, cfg: &RateLimitConfig, now: Instant) {
        let interval = Duration::from_millis(cfg.interval_ms);
        match cfg.window {
            RateWindow::Sliding => {
                while self
                    .window
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= interval)
                {
                    self.window.pop_front();
                }
            }
            RateWindow::Fixed => {
                if now.duration_since(self.window_start) >= interval {
                    self.window.clear();
                    self.window_start = now;
                }
            }
        }
        if now.duration_since(self.day_start) >= Duration::from_millis(cfg.daily_window_ms) {
            self.day_start = now;
            self.day_count = 0;
        }
    }

    fn headers(&self, cfg: &RateLimitConfig) -> RateHeaders {
        let used = u32::try_from(self.window.len()).unwrap_or(u32::MAX);
        RateHeaders {
            limit_daily: cfg.daily_limit,
            daily_remaining: cfg.daily_limit.saturating_sub(self.day_count),
            interval_ms: cfg.interval_ms,
            max: cfg.max,
            remaining: cfg.max.saturating_sub(used),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    BurstExceeded,
    DailyExceeded,
}

#[derive(Debug)]
pub struct RateLimiter {
    cfg: Mutex<RateLimitConfig>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self {
            cfg: Mutex::new(cfg),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> RateLimitConfig {
        self.cfg
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// New limits apply from the next request; the buckets' history is kept.
    pub fn set_config(&self, cfg: RateLimitConfig) {
        *self.cfg.lock().unwrap_or_else(PoisonError::into_inner) = cfg;
    }

    /// Forget every bucket (a fresh day and an empty window for everyone).
    pub fn reset(&self) {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Admit or refuse one request of (`app`, `resource`); admitted requests consume budget.
    pub fn check(&self, app: &str, resource: &str) -> (Verdict, RateHeaders) {
        let cfg = self.config();
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = buckets
            .entry((app.to_owned(), resource.to_owned()))
            .or_insert_with(|| Bucket::new(now));
        b.roll(&cfg, now);
        if !cfg.enabled {
            return (Verdict::Admitted, b.headers(&cfg));
        }
        let verdict = if b.day_count >= cfg.daily_limit {
            Verdict::DailyExceeded
        } else if b.window.len() >= cfg.max as usize {
            Verdict::BurstExceeded
        } else {
            b.window.push_back(now);
            b.day_count += 1;
            Verdict::Admitted
        };
        (verdict, b.headers(&cfg))
    }

    /// The headers of a bucket without consuming anything (for injected 429s).
    pub fn peek(&self, app: &str, resource: &str) -> RateHeaders {
        let cfg = self.config();
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = buckets
            .entry((app.to_owned(), resource.to_owned()))
            .or_insert_with(|| Bucket::new(now));
        b.roll(&cfg, now);
        b.headers(&cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: u32, interval_ms: u64, daily: u64) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            max,
            interval_ms,
            daily_limit: daily,
            ..RateLimitConfig::default()
        })
    }

    #[test]
    fn burst_is_counted_per_app_and_location() {
        let l = limiter(3, 60_000, 1000);
        for i in 0..3 {
            let (v, h) = l.check("app", "loc1");
            assert_eq!(v, Verdict::Admitted);
            assert_eq!(h.remaining, 2 - i);
        }
        assert_eq!(l.check("app", "loc1").0, Verdict::BurstExceeded);
        assert_eq!(l.check("app", "loc2").0, Verdict::Admitted, "own budget");
        assert_eq!(l.check("other", "loc1").0, Verdict::Admitted, "own budget");
        let h = l.peek("app", "loc1");
        assert_eq!((h.remaining, h.daily_remaining), (0, 997));
    }

    #[test]
    fn the_window_slides() {
        let l = limiter(2, 40, 1000);
        assert_eq!(l.check("a", "l").0, Verdict::Admitted);
        assert_eq!(l.check("a", "l").0, Verdict::Admitted);
        assert_eq!(l.check("a", "l").0, Verdict::BurstExceeded);
        let deadline = Instant::now() + Duration::from_secs(5);
        while l.check("a", "l").0 != Verdict::Admitted {
            assert!(Instant::now() < deadline, "window never slid");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_fixed_window_resets_all_at_once() {
        let l = RateLimiter::new(RateLimitConfig {
            max: 2,
            interval_ms: 40,
            window: RateWindow::Fixed,
            ..RateLimitConfig::default()
        });
        assert_eq!(l.check("a", "l").0, Verdict::Admitted);
        assert_eq!(l.check("a", "l").0, Verdict::Admitted);
        assert_eq!(l.check("a", "l").0, Verdict::BurstExceeded);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (v, h) = l.check("a", "l");
            if v == Verdict::Admitted {
                assert_eq!(h.remaining, 1, "a new window, all but this request left");
                break;
            }
            assert!(Instant::now() < deadline, "window never reset");
            std::thread::yield_now();
        }
    }

    #[test]
    fn daily_budget_and_refusals_cost_nothing() {
        let l = limiter(100, 60_000, 2);
        assert_eq!(l.check("a", "l").0, Verdict::Admitted);
        assert_eq!(l.check("a", "l").0, Verdict::Admitted);
        let (v, h) = l.check("a", "l");
        assert_eq!(v, Verdict::DailyExceeded);
        assert_eq!(h.daily_remaining, 0);
        assert_eq!(h.remaining, 98, "refused requests are not in the window");
    }
}
