//! The in-process scheduler of `run`: per active tenant, an incremental sync every
//! `scheduler.incremental_every`, a full sync daily at `scheduler.full_sync_at` (UTC), and an
//! eKyte poll every `scheduler.poll_every`. It only publishes messages; workers do the work.
//! In Kubernetes the same messages come from CronJobs running the one-shot commands
//! (`sync incremental`, `sync full`, `poll-ekyte`), and this scheduler is off.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use ports::Clock;
use ports::queue::{Envelope, Payload, Publisher, SyncMode};
use ports::store::TenantStore;
use tokio_util::sync::CancellationToken;

use crate::config::{SchedulerConfig, parse_hh_mm};

/// What the scheduler publishes, per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Incremental,
    Full,
    Poll,
}

impl Job {
    pub fn payload(self, dry_run: bool) -> Payload {
        match self {
            Self::Incremental => Payload::SyncFull {
                mode: SyncMode::Incremental,
                dry_run,
            },
            Self::Full => Payload::SyncFull {
                mode: SyncMode::Full,
                dry_run,
            },
            Self::Poll => Payload::EkytePoll,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Incremental => "incremental",
            Self::Full => "full",
            Self::Poll => "poll",
        }
    }
}

/// Publish `job` for every active tenant (or one); a poll for every eKyte company (its poll
/// lead's, which polls the company's other tenants too). Every call publishes new messages (ids
/// are unique): a sweep or poll asked for twice runs twice, which is harmless (sweeps resume
/// their checkpoint, polls compare fingerprints) and never silently dropped.
pub async fn enqueue(
    job: Job,
    only: Option<&domain::TenantId>,
    tenants: &dyn TenantStore,
    publisher: &dyn Publisher,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<usize> {
    let list = tenants.list().await?;
    let mut n = 0;
    for t in list.iter().filter(|t| t.active) {
        if only.is_some_and(|o| o != &t.id) {
            continue;
        }
        // One poll per eKyte company: its lead's poll reads it for every tenant mapped to it.
        if job == Job::Poll && only.is_none() && !domain::tenant::is_poll_lead(&list, t) {
            continue;
        }
        let env = Envelope::new(
            format!(
                "{}:{}:{}:{}",
                job.name(),
                t.id,
                now.format("%Y%m%dT%H%M%S"),
                uuid::Uuid::new_v4().simple()
            ),
            t.id.clone(),
            job.payload(dry_run),
            now,
        );
        publisher.publish(&env).await?;
        n += 1;
    }
    Ok(n)
}

/// The time until the next `HH:MM` UTC after `now`.
pub fn until_daily(at: (u32, u32), now: DateTime<Utc>) -> Duration {
    let time = NaiveTime::from_hms_opt(at.0, at.1, 0).unwrap_or(NaiveTime::MIN);
    let today = now.date_naive().and_time(time).and_utc();
    let next = if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    };
    (next - now).to_std().unwrap_or(Duration::from_secs(60))
}

/// Run until `shutdown`.
pub async fn run(
    config: SchedulerConfig,
    tenants: Arc<dyn TenantStore>,
    publisher: Arc<dyn Publisher>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let daily = parse_hh_mm(&config.full_sync_at).unwrap_or((3, 0));
    let mut incremental = tokio::time::interval(config.incremental_every);
    let mut poll = tokio::time::interval(config.poll_every);
    incremental.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let full = tokio::time::sleep(until_daily(daily, clock.now()));
    tokio::pin!(full);
    tracing::info!(?config, "scheduler running");
    loop {
        let job = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = incremental.tick() => Job::Incremental,
            _ = poll.tick() => Job::Poll,
            _ = &mut full => {
                full.as_mut().reset(tokio::time::Instant::now() + until_daily(daily, clock.now()));
                Job::Full
            }
        };
        match enqueue(
            job,
            None,
            tenants.as_ref(),
            publisher.as_ref(),
            clock.now(),
            false,
        )
        .await
        {
            Ok(n) => tracing::info!(job = job.name(), tenants = n, "scheduled"),
            Err(e) => {
                tracing::warn!(job = job.name(), error = %e, "could not schedule; next tick retries")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_nightly_run_is_the_next_occurrence() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 2, 30, 0).unwrap();
        assert_eq!(until_daily((3, 0), now), Duration::from_secs(30 * 60));
        let later = Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap();
        assert_eq!(until_daily((3, 0), later), Duration::from_secs(24 * 3600));
    }
}
