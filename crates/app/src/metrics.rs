//! Prometheus metrics: the exporter, and the gauges read at scrape time.
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade:
//! - `ges_messages_total{kind,outcome,tenant}`, `ges_retries_total{kind,tenant}`,
//!   `ges_waits_total{kind,tenant}` (looked at again once another holder's claim may be taken
//!   over, no attempt spent), `ges_dead_letters_total{kind,tenant}`, `ges_message_seconds{kind}`
//!   (worker);
//! - `ges_api_calls_total{provider,route,status,tenant}` (the GHL and eKyte adapters; `tenant`
//!   is empty for calls made for no tenant, such as the OAuth code exchange);
//! - `ges_webhooks_total{outcome}` (ingress).
//!
//! Gauges are refreshed when `/metrics` is scraped: the GHL rate budget left per location and
//! the daily budget left (`ges_ghl_rate_remaining`, `ges_ghl_daily_remaining`), the sync lag
//! per tenant (`ges_sync_lag_seconds`: now minus the start of the last completed sweep), and
//! queue depths (`ges_queue_depth{queue}`).
//!
//! The retry and dead-letter counters of every active tenant and message kind are exported
//! from the first scrape, at 0, so a dashboard or an alert sees a series that has not moved
//! rather than no series at all (`increase()` of an absent series is no data, not 0).

use std::sync::{Arc, OnceLock};

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use ports::Clock;
use ports::queue::Payload;
use ports::store::{RunKind, RunStore, TenantStore};

use crate::queue::Broker;

/// The metrics recorder is process-wide by the `metrics` facade's design; it is installed
/// once, and every in-process app (tests, the demo) shares it.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install (once) and return the Prometheus recorder's handle.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness); then ours only
            // renders what it sees, which is nothing, and that is visible in the output.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// What `/metrics` reads besides the recorded series.
pub struct Telemetry {
    pub handle: PrometheusHandle,
    pub budgets: Option<Arc<ghl::RateBudgets>>,
    pub tenants: Option<Arc<dyn TenantStore>>,
    pub runs: Option<Arc<dyn RunStore>>,
    pub broker: Option<Arc<dyn Broker>>,
    pub clock: Arc<dyn Clock>,
}

impl Telemetry {
    /// Refresh the gauges and render the Prometheus text format.
    pub async fn render(&self) -> String {
        if let Some(b) = &self.budgets {
            for s in b.snapshot() {
                let location = s.resource.clone();
                if let Some(r) = s.remaining {
                    gauge!("ges_ghl_rate_remaining", "location" => location.clone())
                        .set(f64::from(r));
                }
                gauge!("ges_ghl_rate_max", "location" => location.clone()).set(f64::from(s.max));
                if let Some(d) = s.daily_remaining {
                    gauge!("ges_ghl_daily_remaining", "location" => location).set(d as f64);
                }
            }
        }
        if let (Some(tenants), Some(runs)) = (&self.tenants, &self.runs)
            && let Ok(list) = tenants.list().await
        {
            let now = self.clock.now();
            for t in list.iter().filter(|t| t.active) {
                for kind in Payload::KINDS {
                    let tenant = t.id.to_string();
                    counter!("ges_retries_total", "kind" => kind, "tenant" => tenant.clone())
                        .increment(0);
                    counter!("ges_waits_total", "kind" => kind, "tenant" => tenant.clone())
                        .increment(0);
                    counter!("ges_dead_letters_total", "kind" => kind, "tenant" => tenant)
                        .increment(0);
                }
                let mut newest = None;
                for kind in [RunKind::Incremental, RunKind::Full] {
                    if let Ok(Some(r)) = runs.last_completed(&t.id, kind).await {
                        newest = newest.max(Some(r.started_at));
                    }
                }
                if let Some(at) = newest {
                    gauge!("ges_sync_lag_seconds", "tenant" => t.id.to_string())
                        .set((now - at).num_milliseconds() as f64 / 1000.0);
                }
            }
        }
        if let Some(b) = &self.broker
            && let Ok(d) = b.depths().await
        {
            gauge!("ges_queue_depth", "queue" => "realtime").set(d.realtime as f64);
            gauge!("ges_queue_depth", "queue" => "bulk").set(d.bulk as f64);
            gauge!("ges_queue_depth", "queue" => "delayed").set(d.delayed as f64);
            gauge!("ges_queue_depth", "queue" => "dead").set(d.dead as f64);
        }
        self.handle.render()
    }
}
