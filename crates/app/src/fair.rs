//! Shares of the bulk lane between tenants.
//!
//! The bulk lane is one FIFO for every location, and a message waiting for its location's
//! GHL budget waits inside the worker, holding an in-flight slot (and, on PostgreSQL, a
//! connection for its contact lock). Without shares, a location whose backfill queued
//! thousands of contacts fills every slot with messages that wait for its own budget, and a
//! second location's messages wait behind that backlog while the second budget sits idle.
//!
//! [`Shares`] decides, for each bulk delivery, whether it runs here now or goes back to the
//! broker for a while (RabbitMQ's delay queues; no scheduler of our own in front of them):
//! - every tenant with work in this worker gets an equal share of the slots, rounded up;
//! - a tenant under its share runs (it may wait a moment for a slot);
//! - a tenant at its share may still hold a few more deliveries, waiting for a slot, as long
//!   as they would start within [`Shares::MIN_DEFER`], so one that goes fast is never handed
//!   back; but never more than its equal part of half the look-ahead (the deliveries the
//!   worker takes beyond its slots): the other half stays free, so another tenant's delivery
//!   can always reach the worker;
//! - anything beyond is deferred: handed back to come again when this worker should have
//!   room for it, judged from how long the tenant's messages took lately and how many of its
//!   messages are already waiting in the delay queues.
//!
//! With one tenant alone the share is every slot, so a single backfill runs as it did; only
//! the deliveries beyond the look-ahead are handed back. Real-time messages never pass here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use domain::TenantId;

/// What to do with one bulk delivery.
#[derive(Debug)]
pub enum Admission {
    /// Run it here (after taking an in-flight slot). Drop the ticket when it is settled.
    Run(Ticket),
    /// Hand it back to come again after this long.
    Defer(Duration),
}

/// The shares of one worker's bulk lane.
#[derive(Debug)]
pub struct Shares {
    slots: usize,
    look_ahead: usize,
    state: Mutex<HashMap<TenantId, Share>>,
}

#[derive(Debug, Default)]
struct Share {
    /// Deliveries admitted and not yet settled (running or waiting for a slot).
    held: usize,
    /// How long one of its messages took lately (exponentially weighted), slot wait excluded.
    mean: Option<Duration>,
    /// The time between two of its messages finishing while it had more at work (weighted
    /// likewise): how fast its line really moves here, whatever limits it.
    gap: Option<Duration>,
    /// When its last message finished, if it had more at work then.
    busy_since: Option<Instant>,
    /// Messages this worker deferred, by id, with when they are due back.
    deferred: HashMap<String, Instant>,
}

impl Share {
    fn active(&self) -> bool {
        self.held > 0 || !self.deferred.is_empty()
    }
}

impl Shares {
    /// The shortest wait a deferred message takes (and the longest a held one may expect).
    pub const MIN_DEFER: Duration = Duration::from_millis(500);
    /// The longest: a message deferred this long is looked at again, then maybe deferred
    /// again. Short enough that a pace misjudged in a bad minute (a database restart makes
    /// every message slow) parks nothing for long.
    pub const MAX_DEFER: Duration = Duration::from_secs(30);
    /// A deferred message counts as waiting for its tenant until this long after it was due
    /// (it may have gone to another replica).
    const GRACE: Duration = Duration::from_secs(10);
    /// Weight of the newest duration in the mean.
    const WEIGHT: f64 = 0.2;

    /// Shares of `slots` in-flight slots, with `look_ahead` more deliveries taken from the
    /// broker (the bulk lane's prefetch is `slots + look_ahead`). A tenant may hold half the
    /// look-ahead beyond its share; the other half stays free for other tenants' deliveries.
    pub fn new(slots: usize, look_ahead: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: slots.max(1),
            look_ahead,
            state: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, Share>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decide about the delivery `message` of `tenant`, received at `now`.
    pub fn admit(self: &Arc<Self>, tenant: &TenantId, message: &str, now: Instant) -> Admission {
        let mut state = self.lock();
        // Forget deferrals long overdue (taken by another replica) and idle tenants.
        state.retain(|_, share| {
            share
                .deferred
                .retain(|_, due| now.saturating_duration_since(*due) < Self::GRACE);
            share.active() || share.mean.is_some()
        });
        let others = state
            .iter()
            .filter(|(t, share)| *t != tenant && share.active())
            .count();
        let fair = self.slots.div_ceil(others + 1);
        let share = state.entry(tenant.clone()).or_default();
        // A deferred message that came back no longer waits in the delay queues; if it has
        // to wait again, it keeps its place in the tenant's line.
        let came_back = share.deferred.remove(message);
        // How often one of its messages starts here: measured, else judged from how long
        // one takes and the share, else taken for fast.
        let per_message = share
            .gap
            .unwrap_or_else(|| share.mean.unwrap_or(Duration::ZERO).div_f64(fair as f64));
        // When this one would start: the messages of its tenant admitted beyond its share
        // go first, one every `per_message`.
        let start_in = per_message.saturating_mul(count_u32(share.held.saturating_sub(fair) + 1));
        // Half the look-ahead is shared out like the slots; the other half stays free, so
        // that another tenant's delivery can always reach the worker.
        let buffer_cap = fair + (self.look_ahead / 2).div_ceil(others + 1);
        if share.held < fair || (share.held < buffer_cap && start_in < Self::MIN_DEFER) {
            share.held += 1;
            return Admission::Run(Ticket {
                shares: Arc::clone(self),
                tenant: tenant.clone(),
                started: None,
            });
        }
        // Behind the ones held beyond the share and the deferred ones due before it (all of
        // them for a new one).
        let deferred_before = match came_back {
            Some(due) => share.deferred.values().filter(|d| **d <= due).count(),
            None => share.deferred.len(),
        };
        let ahead = share.held.saturating_sub(fair) + deferred_before + 1;
        let delay = per_message
            .saturating_mul(count_u32(ahead))
            .clamp(Self::MIN_DEFER, Self::MAX_DEFER);
        share.deferred.insert(message.to_owned(), now + delay);
        Admission::Defer(delay)
    }

    /// Tenants with work here, and how many deliveries each holds (for tests and the
    /// console).
    pub fn held(&self) -> Vec<(TenantId, usize, usize)> {
        let state = self.lock();
        let mut out: Vec<_> = state
            .iter()
            .filter(|(_, s)| s.active())
            .map(|(t, s)| (t.clone(), s.held, s.deferred.len()))
            .collect();
        out.sort();
        out
    }

    fn settled(&self, tenant: &TenantId, took: Option<Duration>, now: Instant) {
        let mut state = self.lock();
        if let Some(share) = state.get_mut(tenant) {
            share.held = share.held.saturating_sub(1);
            if let Some(took) = took {
                share.mean = Some(weigh(share.mean, took));
                if let Some(since) = share.busy_since {
                    share.gap = Some(weigh(share.gap, now.saturating_duration_since(since)));
                }
                share.busy_since = (share.held > 0).then_some(now);
            }
        }
    }
}

/// The exponentially weighted mean of `mean` and a new sample.
fn weigh(mean: Option<Duration>, sample: Duration) -> Duration {
    match mean {
        None => sample,
        Some(m) => m.mul_f64(1.0 - Shares::WEIGHT) + sample.mul_f64(Shares::WEIGHT),
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// An admitted delivery. [`Ticket::start`] when it has its slot; dropping it settles the
/// share (and records how long the message took, if it started).
#[derive(Debug)]
pub struct Ticket {
    shares: Arc<Shares>,
    tenant: TenantId,
    started: Option<Instant>,
}

impl Ticket {
    /// The message got its slot and starts now.
    pub fn start(&mut self) {
        self.started = Some(Instant::now());
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let now = Instant::now();
        let took = self.started.map(|s| now.saturating_duration_since(s));
        self.shares.settled(&self.tenant, took, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(n: u32) -> TenantId {
        TenantId::parse(format!("tenant{n}")).unwrap()
    }

    fn ticket(a: Admission) -> Ticket {
        match a {
            Admission::Run(t) => t,
            Admission::Defer(d) => panic!("expected to run, deferred for {d:?}"),
        }
    }

    fn deferred(a: Admission) -> Duration {
        match a {
            Admission::Run(_) => panic!("expected a deferral"),
            Admission::Defer(d) => d,
        }
    }

    /// As if `tenant`'s messages took `took` lately.
    fn took(shares: &Arc<Shares>, tenant: &TenantId, took: Duration) {
        shares.lock().entry(tenant.clone()).or_default().mean = Some(took);
    }

    #[test]
    fn a_finished_message_moves_the_mean_and_frees_its_hold() {
        let shares = Shares::new(2, 0);
        let a = tenant(1);
        took(&shares, &a, Duration::from_secs(1));
        let mut t = ticket(shares.admit(&a, "m", Instant::now()));
        t.started = Some(Instant::now() - Duration::from_secs(6));
        drop(t);
        let mean = shares.lock()[&a].mean.unwrap();
        // 0.8 × 1 s + 0.2 × 6 s
        assert!(
            mean >= Duration::from_secs(2) && mean < Duration::from_millis(2_100),
            "{mean:?}"
        );
        assert_eq!(shares.held(), vec![]);
        // One that never started (shutdown) frees its hold without moving the mean.
        drop(ticket(shares.admit(&a, "n", Instant::now())));
        assert_eq!(shares.lock()[&a].mean, Some(mean));
        assert_eq!(shares.lock()[&a].gap, None, "it never had two at work");
    }

    #[test]
    fn the_pace_of_a_busy_tenants_line_is_measured_between_two_finished_messages() {
        let shares = Shares::new(4, 0);
        let a = tenant(1);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Two at work; settled here at chosen moments instead of by dropping the tickets.
        for m in ["m1", "m2"] {
            std::mem::forget(ticket(shares.admit(&a, m, t0)));
        }
        shares.settled(&a, Some(ms(900)), t0 + ms(1_000));
        shares.settled(&a, Some(ms(900)), t0 + ms(1_300));
        assert_eq!(shares.lock()[&a].gap, Some(ms(300)));
        // Idle since: the next one finishing alone tells nothing of the pace.
        std::mem::forget(ticket(shares.admit(&a, "m3", t0 + ms(5_000))));
        shares.settled(&a, Some(ms(900)), t0 + ms(6_000));
        assert_eq!(shares.lock()[&a].gap, Some(ms(300)));
        // The measured pace is what a deferral counts by: each one in line waits one more
        // (the first one the shortest wait).
        let _running: Vec<_> = (0..4)
            .map(|i| ticket(shares.admit(&a, &format!("r{i}"), t0)))
            .collect();
        let waits: Vec<_> = (0..3)
            .map(|i| deferred(shares.admit(&a, &format!("d{i}"), t0)))
            .collect();
        assert_eq!(waits, vec![Shares::MIN_DEFER, ms(600), ms(900)]);
    }

    #[test]
    fn a_tenant_alone_takes_every_slot_and_a_fast_one_is_never_handed_back() {
        let shares = Shares::new(4, 4);
        let a = tenant(1);
        let now = Instant::now();
        // Nothing measured yet: it is taken for fast, and may hold its slots and half the
        // look-ahead.
        let held: Vec<_> = (0..6)
            .map(|i| ticket(shares.admit(&a, &format!("m{i}"), now)))
            .collect();
        assert_eq!(shares.held(), vec![(a.clone(), 6, 0)]);
        // Beyond that, it goes back for the shortest wait.
        assert_eq!(deferred(shares.admit(&a, "m6", now)), Shares::MIN_DEFER);
        drop(held);
        assert_eq!(shares.held(), vec![(a, 0, 1)]);
    }

    #[test]
    fn a_slow_tenant_holds_only_what_would_start_within_the_shortest_wait() {
        let shares = Shares::new(4, 8);
        let a = tenant(1);
        // Its messages take 1 s each (waiting for its GHL budget): with 4 slots, one slot
        // frees every 250 ms.
        took(&shares, &a, Duration::from_secs(1));
        let now = Instant::now();
        let _running: Vec<_> = (0..4)
            .map(|i| ticket(shares.admit(&a, &format!("r{i}"), now)))
            .collect();
        // The 5th would start in 250 ms: held. The 6th in 500 ms: handed back.
        let _waiting = ticket(shares.admit(&a, "w0", now));
        let first = deferred(shares.admit(&a, "d0", now));
        let second = deferred(shares.admit(&a, "d1", now));
        // Each deferred one is due after the ones before it: the one held beyond the share
        // and the deferred ones, 250 ms each.
        assert_eq!(first, Duration::from_millis(500));
        assert_eq!(second, Duration::from_millis(750));
        // When one comes back and has to wait again, it keeps its place: d1, due after it,
        // is not ahead of it.
        let back = deferred(shares.admit(&a, "d0", now));
        assert_eq!(back, Duration::from_millis(500));
        // A new one queues behind both.
        assert_eq!(
            deferred(shares.admit(&a, "d2", now)),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn a_second_tenant_gets_half_the_slots_while_the_first_is_handed_back() {
        let shares = Shares::new(4, 4);
        let (a, b) = (tenant(1), tenant(2));
        took(&shares, &a, Duration::from_secs(4));
        let now = Instant::now();
        let running_a: Vec<_> = (0..4)
            .map(|i| ticket(shares.admit(&a, &format!("a{i}"), now)))
            .collect();
        // B arrives while A holds every slot: B is under its share and runs (it takes the
        // next free slot), up to half the slots.
        let b0 = ticket(shares.admit(&b, "b0", now));
        let b1 = ticket(shares.admit(&b, "b1", now));
        assert_eq!(shares.held(), vec![(a.clone(), 4, 0), (b.clone(), 2, 0)]);
        // A, over its new share, is handed back, not queued in front of B.
        assert!(deferred(shares.admit(&a, "a4", now)) >= Shares::MIN_DEFER);
        // Once B is done, A has every slot again.
        drop((b0, b1));
        drop(running_a);
        let _again: Vec<_> = (0..4)
            .map(|i| ticket(shares.admit(&a, &format!("x{i}"), now)))
            .collect();
        assert_eq!(shares.held(), vec![(a, 4, 1)]);
    }

    #[test]
    fn many_tenants_leave_part_of_the_look_ahead_free() {
        // 4 slots; the broker hands out 16.
        let shares = Shares::new(4, 12);
        let now = Instant::now();
        let tenants: Vec<_> = (1..=3).map(tenant).collect();
        // Each has a sweep running: three tenants at work.
        let mut held: Vec<_> = tenants
            .iter()
            .map(|t| ticket(shares.admit(t, "sweep", now)))
            .collect();
        for t in &tenants {
            for n in 0.. {
                match shares.admit(t, &format!("{t}-{n}"), now) {
                    Admission::Run(x) => held.push(x),
                    Admission::Defer(_) => break,
                }
            }
        }
        // Each holds its share of the slots (2) and of half the look-ahead (2), however
        // fast it goes: 12 of the 16, and 4 deliveries stay free to show a fourth tenant.
        let expected: Vec<_> = tenants.iter().map(|t| (t.clone(), 4, 1)).collect();
        assert_eq!(shares.held(), expected);
        let fourth = tenant(4);
        let _its = ticket(shares.admit(&fourth, "first", now));
    }

    #[test]
    fn deferrals_are_bounded_and_forgotten_when_long_overdue() {
        let shares = Shares::new(1, 0);
        let a = tenant(1);
        took(&shares, &a, Duration::from_secs(3600));
        let now = Instant::now();
        let _running = ticket(shares.admit(&a, "r", now));
        assert_eq!(deferred(shares.admit(&a, "d", now)), Shares::MAX_DEFER);
        // Never came back here (another replica took it): forgotten after its grace.
        let later = now + Shares::MAX_DEFER + Shares::GRACE;
        let _ = deferred(shares.admit(&a, "e", later));
        assert_eq!(shares.held(), vec![(a, 1, 1)]);
    }
}
