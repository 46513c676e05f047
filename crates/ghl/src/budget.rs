//! The rate budget of each (app, location): GHL allows 100 requests per 10 s and 200,000 per
//! day per Marketplace app and resource (API.md §8), and says where a client stands in five
//! `X-RateLimit-*` headers on every answer.
//!
//! What it guarantees:
//! - **one process alone never earns a 429**, and once it has seen other replicas it leaves
//!   a few slots of each window free (`newcomer_room`) so that a newcomer's first request is
//!   admitted and shows up in its count. The server counts a request from its arrival,
//!   which lies between our send and our receipt of the answer. So a request holds a slot
//!   from its send until an interval after its answer — never fewer slots than the server
//!   counts, whether GHL keeps a sliding log or fixed windows. The headers tighten this
//!   without risk: the count `X-RateLimit-Max − X-RateLimit-Remaining` in the answer to a
//!   request X includes every request of ours answered before X was sent (they arrived
//!   before X), so at most that many of them can still be in the window;
//! - **several processes sharing a budget stay inside it** by reading the headers: when the
//!   server counts more requests than this process can account for, someone else is using
//!   the budget. From then on, until two quiet intervals pass, a share of the budget
//!   (`shared_reserve`) is left to the others, at most a quarter of that share is in flight
//!   at once (four processes that read the same headers together stay inside it),
//!   `X-RateLimit-Remaining` (less what we sent since) gates every request, and when it runs
//!   low the budget waits for the interval, then sends a single probe to read fresh headers;
//! - **real-time before bulk**: when calls wait, the next free slot goes to the oldest
//!   `Priority::RealTime` waiter, then to the oldest bulk one; bulk calls also stop short of
//!   the daily limit (`daily_bulk_reserve`) so webhooks keep flowing late in the day;
//! - a fresh budget sends one probe before anything else: until a first answer brings the
//!   headers, it cannot know whether others (a crashed predecessor, say) used the window; a
//!   slow answer never replaces the reading of a request sent after it;
//! - a 429 counts as "remaining 0": wait for the interval, then probe;
//! - waiting is cancel-safe: a dropped waiter leaves the queue, a dropped permit releases its
//!   slot as if the answer had arrived then. Only the head of the queue is woken on a change
//!   (each waiter has its own `Notify`), so many waiters cost no thundering herd.
//!
//! Why not `governor`: its GCRA admits a full burst and then refills continuously, so right
//! after a burst of 100 it admits a 101st request 100 ms later — a 429 under GHL's "100 per
//! 10 s" when the server counts a window (the simulator uses a sliding log, the strictest
//! reading). A GCRA with no burst is safe but delays even a lone webhook call after idling.
//! Governor can also not be corrected from the server's headers (its cells can be consumed,
//! never returned or re-read) and has no priorities. The structure here is small — the held
//! slots, the in-flight set and the latest header reading under one mutex — and its tests
//! drive it with Tokio's paused clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ports::store::{RateWindow, Taken, WindowKey, WindowSlot};
use ports::{ApiError, Priority};
use reqwest::header::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::RateConfig;

/// The five headers of API.md §8 (\[AUTHMD\]); each may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// `X-RateLimit-Limit-Daily`
    pub limit_daily: Option<u64>,
    /// `X-RateLimit-Daily-Remaining`
    pub daily_remaining: Option<u64>,
    /// `X-RateLimit-Interval-Milliseconds`
    pub interval: Option<Duration>,
    /// `X-RateLimit-Max`
    pub max: Option<u32>,
    /// `X-RateLimit-Remaining`
    pub remaining: Option<u32>,
}

impl RateHeaders {
    /// The headers of one answer; `None` when it carries none of them.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        fn num(headers: &HeaderMap, name: &str) -> Option<u64> {
            headers.get(name)?.to_str().ok()?.trim().parse().ok()
        }
        let h = Self {
            limit_daily: num(headers, "x-ratelimit-limit-daily"),
            daily_remaining: num(headers, "x-ratelimit-daily-remaining"),
            interval: num(headers, "x-ratelimit-interval-milliseconds")
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            max: num(headers, "x-ratelimit-max")
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m > 0),
            remaining: num(headers, "x-ratelimit-remaining")
                .map(|r| u32::try_from(r).unwrap_or(u32::MAX)),
        };
        (h != Self::default()).then_some(h)
    }
}

/// Whose budget: the Marketplace app and the resource (location, or company for agency
/// calls) (API.md §8).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BudgetKey {
    pub app: String,
    pub resource: String,
}

impl BudgetKey {
    pub fn new(app: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            resource: resource.into(),
        }
    }
}

/// Where one budget stands, for metrics and `status` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSnapshot {
    pub app: String,
    /// The location (or company) id.
    pub resource: String,
    /// The burst limit and its window, as the latest headers said.
    pub max: u32,
    pub interval: Duration,
    /// Slots this process holds: requests in flight or answered less than `interval` ago.
    pub used: u32,
    pub in_flight: u32,
    /// `X-RateLimit-Remaining` of the latest answer, less what was sent since.
    pub remaining: Option<u32>,
    pub daily_limit: u64,
    /// `X-RateLimit-Daily-Remaining` of the latest answer, less what was sent since.
    pub daily_remaining: Option<u64>,
    /// Whether another client was seen using this budget recently.
    pub shared: bool,
    pub waiting_real_time: u32,
    pub waiting_bulk: u32,
    /// Requests let through since start.
    pub granted: u64,
    /// 429s received since start.
    pub throttled: u64,
    /// Answers whose count showed requests of another client (another replica, another
    /// process with the same app) since start.
    pub others_seen: u64,
}

/// Every budget of the process, created on first use. Shared by all tasks (clone the `Arc`).
#[derive(Debug)]
pub struct RateBudgets {
    config: RateConfig,
    shared: Option<Arc<SharedWindow>>,
    budgets: Mutex<HashMap<BudgetKey, Arc<Budget>>>,
}

/// The largest window kept in the shared table, one row per slot; a larger `X-RateLimit-Max`
/// is not GHL's 100 (a test's limit out of reach) and is not shared.
const MAX_WINDOW_SLOTS: u32 = 10_000;

/// The window every replica shares ([`RateWindow`]), when the deployment has one.
struct SharedWindow {
    window: Arc<dyn RateWindow>,
    /// This process, in each holder name.
    process: String,
    next: AtomicU64,
    /// The longest a request may hold a slot unanswered (the whole-request timeout and some
    /// spare): a process that dies holding it frees it then.
    hold: Duration,
    /// The answered slots on their way to the window, released together (see
    /// [`SharedWindow::release`]); started with the first.
    releases: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<(WindowSlot, Duration)>>,
}

impl std::fmt::Debug for SharedWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWindow")
            .field("process", &self.process)
            .field("hold", &self.hold)
            .finish_non_exhaustive()
    }
}

/// The most slots one release statement frees.
const RELEASE_BATCH: usize = 200;

impl SharedWindow {
    fn new(window: Arc<dyn RateWindow>, process: String, hold: Duration) -> Self {
        Self {
            window,
            process,
            next: AtomicU64::new(0),
            hold,
            releases: std::sync::OnceLock::new(),
        }
    }

    /// Free `slot` `interval` after now (its request was answered). The slots answered while
    /// one release is written go together in the next: one statement for many answers when
    /// calls are many, and no later than one statement's time when they are few. Needs a
    /// runtime: without one (the process is ending) the slot frees when its hold expires.
    fn release(&self, slot: WindowSlot, interval: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sender = self.releases.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            runtime.spawn(release_answered(self.window.clone(), rx));
            tx
        });
        if sender.send((slot, interval)).is_err() {
            // The runtime that ran the releases has ended: the slot frees when its hold
            // expires.
            metrics::counter!("ges_ghl_window_errors_total", "op" => "release").increment(1);
        }
    }

    fn holder(&self) -> String {
        format!(
            "{}:{}",
            self.process,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl RateBudgets {
    pub fn new(config: RateConfig) -> Self {
        Self {
            config,
            shared: None,
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// Budgets whose slots are also taken from `window`, which every replica of the
    /// deployment shares: together they use the whole of GHL's window and no more (see
    /// [`RateWindow`]). A request that waits longer than `request_timeout` for its answer
    /// still frees its slot an interval after that.
    pub fn shared(
        config: RateConfig,
        window: Arc<dyn RateWindow>,
        request_timeout: Duration,
    ) -> Self {
        let process = format!("{:016x}", rand::random::<u64>());
        Self {
            shared: Some(Arc::new(SharedWindow::new(
                window,
                process,
                request_timeout + Duration::from_secs(5),
            ))),
            ..Self::new(config)
        }
    }

    pub(crate) fn budget(&self, key: &BudgetKey) -> Arc<Budget> {
        let mut map = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Budget::new(
                    key.clone(),
                    self.config.clone(),
                    self.shared.clone(),
                ))
            })
            .clone()
    }

    /// Every budget used so far, ordered by app and resource.
    pub fn snapshot(&self) -> Vec<BudgetSnapshot> {
        let budgets: Vec<Arc<Budget>> = self
            .budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut out: Vec<BudgetSnapshot> = budgets.iter().map(|b| b.snapshot()).collect();
        out.sort_by(|a, b| (&a.app, &a.resource).cmp(&(&b.app, &b.resource)));
        out
    }

    /// The budgets of one location (or company), one per app.
    pub fn for_resource(&self, resource: &str) -> Vec<BudgetSnapshot> {
        self.snapshot()
            .into_iter()
            .filter(|s| s.resource == resource)
            .collect()
    }
}

/// The latest header reading.
#[derive(Debug, Clone, Copy)]
struct Observation {
    at: Instant,
    /// When the observed request was sent: a slow answer to an earlier request must not
    /// replace the reading of a later one.
    sent: Instant,
    remaining: Option<u32>,
    daily_remaining: Option<u64>,
    /// Our requests that may reach the server after the observed one did, so that the
    /// reading does not count them yet: those unanswered when it came back, and those
    /// answered after the observed request was sent.
    unaccounted: u32,
    /// `next_seq` when the reading came back: later sends are subtracted from it too.
    seq_mark: u64,
}

/// A slot of an answered request, held until an interval after its answer.
#[derive(Debug, Clone, Copy)]
struct Held {
    answered: Instant,
    release: Instant,
}

/// The server's count at the arrival of one of our requests (`X-RateLimit-Max` less
/// `X-RateLimit-Remaining`), and when that request was sent.
#[derive(Debug, Clone, Copy)]
struct Count {
    sent: Instant,
    count: u32,
}

#[derive(Debug)]
struct State {
    max: u32,
    interval: Duration,
    daily_limit: u64,
    /// Slots of answered requests, until an interval after their answer.
    held: VecDeque<Held>,
    /// The server's count seen in the answer to our most recently sent request.
    latest_count: Option<Count>,
    /// When our recent answers arrived (to tell our requests from someone else's).
    answers: VecDeque<Instant>,
    /// Unanswered requests: sequence number → when sent.
    in_flight: BTreeMap<u64, Instant>,
    next_seq: u64,
    observed: Option<Observation>,
    shared_until: Option<Instant>,
    /// Queued callers, real-time first, then in arrival order, each with its own wake-up.
    waiters: BTreeMap<(Priority, u64), Arc<Notify>>,
    next_ticket: u64,
    granted: u64,
    throttled: u64,
    others_seen: u64,
    /// The slots are also taken from a window the replicas share: their requests in the
    /// headers' count are not a reason to hold back.
    windowed: bool,
    /// The shared window had no slot for real-time calls (and so none for bulk ones) until
    /// then, or none for bulk ones.
    window_full: Option<Instant>,
    window_full_bulk: Option<Instant>,
}

enum Decision {
    Go(u64),
    /// Wait for a state change, or until this instant at the latest.
    Wait(Option<Instant>),
    Refuse(ApiError),
}

impl State {
    fn new(config: &RateConfig, windowed: bool) -> Self {
        Self {
            windowed,
            window_full: None,
            window_full_bulk: None,
            max: config.max,
            interval: config.interval,
            daily_limit: config.daily_limit,
            held: VecDeque::new(),
            latest_count: None,
            answers: VecDeque::new(),
            in_flight: BTreeMap::new(),
            next_seq: 1,
            observed: None,
            shared_until: None,
            waiters: BTreeMap::new(),
            next_ticket: 0,
            granted: 0,
            throttled: 0,
            others_seen: 0,
        }
    }

    fn trim(&mut self, now: Instant) {
        self.held.retain(|h| h.release > now);
        // An answer matters while it may explain a count the server reports for a request
        // still in flight (sent at or after the oldest one).
        let oldest = self
            .in_flight
            .values()
            .min()
            .copied()
            .unwrap_or(now)
            .min(now);
        if let Some(horizon) = oldest.checked_sub(self.interval) {
            while self.answers.front().is_some_and(|a| *a <= horizon) {
                self.answers.pop_front();
            }
        }
    }

    fn shared(&self, now: Instant) -> bool {
        self.shared_until.is_some_and(|u| now < u)
    }

    /// Requests the latest reading does not count: see [`Observation::unaccounted`].
    fn unseen(&self, o: &Observation) -> u64 {
        u64::from(o.unaccounted) + self.next_seq.saturating_sub(o.seq_mark)
    }

    /// The server's `X-RateLimit-Remaining`, less what it may not have counted yet: an upper
    /// bound on the free slots when we are the only client.
    fn remaining_estimate(&self) -> Option<u32> {
        let o = self.observed.as_ref()?;
        let r = u64::from(o.remaining?);
        Some(u32::try_from(r.saturating_sub(self.unseen(o))).unwrap_or(u32::MAX))
    }

    fn daily_estimate(&self, now: Instant, config: &RateConfig) -> Option<u64> {
        let o = self.observed.as_ref()?;
        if now >= o.at + config.daily_recheck {
            return None;
        }
        Some(o.daily_remaining?.saturating_sub(self.unseen(o)))
    }

    /// How many slots of the server's window our requests may hold at our next arrival, when
    /// we are the only client. Each answered request holds its slot until an interval after
    /// its answer (it arrived at the latest then). The server's count in the answer to
    /// request X caps that further: requests answered before X was sent arrived before X
    /// did, so at most `count - 1` of them can still be in the window.
    fn own_bound(&self) -> usize {
        let in_flight = self.in_flight.len();
        let Some(x) = self.latest_count else {
            return self.held.len() + in_flight;
        };
        let before = self.held.iter().filter(|h| h.answered < x.sent).count();
        let others = self.held.len() - before;
        before.min(x.count.saturating_sub(1) as usize) + others + in_flight
    }

    fn next_release(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.release).min()
    }

    fn head(&self) -> Option<&(Priority, u64)> {
        self.waiters.keys().next()
    }

    /// Let the first queued caller look again.
    fn wake_head(&self) {
        if let Some(n) = self.waiters.values().next() {
            n.notify_one();
        }
    }

    /// How long a header reading is trusted for gating in shared mode; past it, one probe.
    fn freshness(&self) -> Duration {
        (self.interval / 20).max(Duration::from_millis(1))
    }

    fn reserve(&self, config: &RateConfig) -> u32 {
        let r = (f64::from(self.max) * config.shared_reserve).ceil();
        // `max` is a u32 and the share is below 1, so this fits.
        (r as u32).min(self.max.saturating_sub(1))
    }

    fn realtime_room(&self, config: &RateConfig) -> u32 {
        let r = (f64::from(self.max) * config.realtime_share.clamp(0.0, 1.0)).ceil();
        // `max` is a u32 and the share at most 1, so this fits.
        r as u32
    }

    fn try_take(&mut self, ticket: (Priority, u64), now: Instant, config: &RateConfig) -> Decision {
        if self.head() != Some(&ticket) {
            return Decision::Wait(None);
        }
        let full = match ticket.0 {
            Priority::RealTime => self.window_full,
            Priority::Bulk => self.window_full.max(self.window_full_bulk),
        };
        if let Some(until) = full.filter(|u| now < *u) {
            return Decision::Wait(Some(until));
        }
        self.trim(now);
        if let Some(daily) = self.daily_estimate(now, config) {
            let floor = match ticket.0 {
                Priority::RealTime => 0,
                Priority::Bulk => config.daily_bulk_reserve,
            };
            if daily <= floor {
                return Decision::Refuse(ApiError::RateLimited {
                    retry_after: Some(config.daily_recheck),
                });
            }
        }
        let shared = self.shared(now);
        let (used, limit) = if shared {
            (self.held.len() + self.in_flight.len(), self.max)
        } else {
            // Alone now but not always (other replicas exist), a few slots stay free: a
            // newcomer's probe (a replica that starts, a worker restarted after a crash) finds
            // room, and its admitted request tells this process that it is alone no more. A
            // refused one would not: the server counts only admitted requests, and the
            // newcomer would wait behind a process that never learns of it. A process that
            // never saw another one (a single worker) uses the whole window.
            let room = if self.others_seen > 0 && !self.windowed {
                config.newcomer_room
            } else {
                0
            };
            (self.own_bound(), self.max.saturating_sub(room).max(1))
        };
        // Bulk calls leave the real-time room free.
        let limit = match ticket.0 {
            Priority::RealTime => limit,
            Priority::Bulk => limit.saturating_sub(self.realtime_room(config)).max(1),
        };
        if used >= limit as usize {
            return Decision::Wait(self.next_release());
        }
        // A process that has not read the headers yet knows nothing of the others (a worker
        // just restarted after a crash, while its predecessor's calls still count): one probe
        // first, whose answer tells whether the budget is shared.
        if config.probe_first
            && self.answers.is_empty()
            && self.held.is_empty()
            && !self.in_flight.is_empty()
        {
            return Decision::Wait(None);
        }
        if shared {
            let reserve = self.reserve(config);
            // Several processes may read the same "remaining" at once and each send `cap`: a
            // quarter of the reserve keeps up to four of them inside it together.
            let cap = (reserve / 4).max(1) as usize;
            if self.in_flight.len() >= cap {
                return Decision::Wait(None);
            }
            let reading = self.observed.map(|o| (o, self.remaining_estimate()));
            match reading {
                // Running low: wait for the interval (the slots it saw taken free by then),
                // or for an answer in flight to bring a newer reading.
                Some((o, Some(est))) if est <= reserve && now < o.at + self.interval => {
                    if !self.in_flight.is_empty() {
                        return Decision::Wait(None);
                    }
                    return Decision::Wait(Some(o.at + self.interval));
                }
                // A recent reading with room to spare.
                Some((o, Some(_))) if now < o.at + self.freshness() => {}
                // No reading, or an old one: one probe at a time until an answer brings one.
                _ if !self.in_flight.is_empty() => return Decision::Wait(None),
                _ => {}
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.insert(seq, now);
        self.waiters.remove(&ticket);
        self.granted += 1;
        // Another slot may be free too: let the next in line look.
        self.wake_head();
        Decision::Go(seq)
    }

    /// A caller let through found the shared window full: it goes back to its place in the
    /// queue, and callers of its priority (and below) wait until `until`.
    fn put_back(&mut self, seq: u64, ticket: (Priority, u64), wake: Arc<Notify>, until: Instant) {
        self.in_flight.remove(&seq);
        self.granted = self.granted.saturating_sub(1);
        self.waiters.insert(ticket, wake);
        match ticket.0 {
            Priority::RealTime => self.window_full = Some(until),
            Priority::Bulk => self.window_full_bulk = Some(until),
        }
        // Its slot is no longer in flight: a caller waiting on that (the probe of a fresh
        // budget, the limit) looks again, and a real-time caller ahead of it may go.
        self.wake_head();
    }

    fn complete(&mut self, seq: u64, headers: Option<RateHeaders>, throttled: bool, now: Instant) {
        // Trim while this request still counts as in flight: the answers it may have met on
        // the server (those after its send less an interval) must stay.
        self.trim(now);
        let Some(sent) = self.in_flight.remove(&seq) else {
            return;
        };
        let unaccounted = self.in_flight.len() + self.answers.iter().filter(|a| **a > sent).count();
        if let Some(h) = headers {
            if let Some(m) = h.max {
                self.max = m;
            }
            if let Some(i) = h.interval {
                self.interval = i;
            }
            if let Some(d) = h.limit_daily {
                self.daily_limit = d;
            }
            if let Some(rem) = h.remaining {
                // The server counted `used` requests in its window, this one included. Ours
                // that it may have counted: this one, those still in flight, and those
                // answered after `sent - interval`. More than that is someone else.
                let server_used = self.max.saturating_sub(rem) as usize;
                let ours = 1
                    + self.in_flight.len()
                    + self
                        .answers
                        .iter()
                        .filter(|a| **a + self.interval > sent)
                        .count();
                if server_used > ours {
                    self.others_seen += 1;
                    // Other replicas take their slots from the shared window too.
                    if !self.windowed {
                        self.shared_until = Some(now + self.interval * 2);
                    }
                }
                // A 429 was not counted: only admitted requests tell the server's count.
                if !throttled && self.latest_count.is_none_or(|c| sent > c.sent) {
                    self.latest_count = Some(Count {
                        sent,
                        count: count_u32(server_used),
                    });
                }
            }
            // A slow answer to an earlier request must not replace a newer reading: it shows
            // the window as it was before the others' latest requests arrived (with a long
            // tail, a whole interval before).
            if self.observed.is_none_or(|o| sent >= o.sent) {
                self.observed = Some(Observation {
                    at: now,
                    sent,
                    remaining: h.remaining,
                    daily_remaining: h.daily_remaining,
                    unaccounted: count_u32(unaccounted),
                    seq_mark: self.next_seq,
                });
            }
        }
        if throttled {
            // Whatever the headers say, the window is full now: wait for the interval.
            self.throttled += 1;
            self.shared_until = Some(now + self.interval * 2);
            let newest = self.observed.map_or(sent, |o| o.sent.max(sent));
            self.observed = Some(Observation {
                at: now,
                sent: newest,
                remaining: Some(0),
                daily_remaining: headers.and_then(|h| h.daily_remaining),
                unaccounted: count_u32(unaccounted),
                seq_mark: self.next_seq,
            });
        }
        self.held.push_back(Held {
            answered: now,
            release: now + self.interval,
        });
        self.answers.push_back(now);
        self.wake_head();
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One (app, resource) budget.
#[derive(Debug)]
pub(crate) struct Budget {
    key: BudgetKey,
    config: RateConfig,
    shared: Option<Arc<SharedWindow>>,
    state: Mutex<State>,
}

impl Budget {
    fn new(key: BudgetKey, config: RateConfig, shared: Option<Arc<SharedWindow>>) -> Self {
        Self {
            state: Mutex::new(State::new(&config, shared.is_some())),
            key,
            config,
            shared,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every later call down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for a slot. `RateLimited` when the daily budget is spent (for bulk calls: when
    /// only the real-time reserve is left).
    pub(crate) async fn acquire(self: &Arc<Self>, priority: Priority) -> Result<Permit, ApiError> {
        let wake = Arc::new(Notify::new());
        let ticket = {
            let mut s = self.lock();
            let t = (priority, s.next_ticket);
            s.next_ticket += 1;
            s.waiters.insert(t, wake.clone());
            t
        };
        let _queued = Queued {
            budget: self,
            ticket,
        };
        loop {
            let decision = self.lock().try_take(ticket, Instant::now(), &self.config);
            match decision {
                Decision::Go(seq) => {
                    let Some(shared) = &self.shared else {
                        return Ok(self.permit(seq, None));
                    };
                    // Until the window answers, the slot counts here as in flight; a caller
                    // that gives up meanwhile frees it like an answer would.
                    let mut pending = Pending {
                        budget: self,
                        seq: Some(seq),
                    };
                    match self.take_shared(shared, priority).await {
                        Shared::Slot(slot) => {
                            pending.seq = None;
                            return Ok(self.permit(seq, Some(slot)));
                        }
                        Shared::Alone => {
                            pending.seq = None;
                            return Ok(self.permit(seq, None));
                        }
                        Shared::FullFor(wait) => {
                            pending.seq = None;
                            let until = Instant::now() + wait;
                            self.lock().put_back(seq, ticket, wake.clone(), until);
                        }
                    }
                }
                Decision::Refuse(e) => return Err(e),
                // `notify_one` keeps a wake-up for a caller not yet waiting: none is lost.
                Decision::Wait(None) => wake.notified().await,
                Decision::Wait(Some(until)) => {
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }

    fn permit(self: &Arc<Self>, seq: u64, slot: Option<WindowSlot>) -> Permit {
        Permit {
            budget: Arc::clone(self),
            seq,
            slot,
            done: false,
        }
    }

    /// A slot of the shared window for a caller the local rules let through.
    async fn take_shared(&self, shared: &SharedWindow, priority: Priority) -> Shared {
        let (key, max, leave_free, interval) = {
            let s = self.lock();
            let leave_free = match priority {
                Priority::RealTime => 0,
                Priority::Bulk => s.realtime_room(&self.config).min(s.max.saturating_sub(1)),
            };
            (
                WindowKey {
                    app: self.key.app.clone(),
                    resource: self.key.resource.clone(),
                },
                s.max,
                leave_free,
                s.interval,
            )
        };
        if max > MAX_WINDOW_SLOTS {
            // No window that large is GHL's (it allows 100): nothing to share.
            return Shared::Alone;
        }
        let hold = shared.hold + interval;
        match shared
            .window
            .take(&key, max, leave_free, hold, &shared.holder())
            .await
        {
            Ok(Taken::Slot(slot)) => Shared::Slot(slot),
            // A slot frees within an interval at the latest (one answered now); one held by
            // a request still in flight may free sooner than the window can tell.
            Ok(Taken::Full { next_free_in }) => {
                Shared::FullFor(next_free_in.min(interval / 4).max(Duration::from_millis(1)))
            }
            Err(e) => {
                // Without the window, the headers still tell this process what the others
                // use: hold back as when another client is seen.
                tracing::warn!(
                    location = %self.key.resource,
                    error = %e,
                    "the shared rate window cannot be reached; going by GHL's headers alone"
                );
                metrics::counter!("ges_ghl_window_errors_total", "op" => "take").increment(1);
                let mut s = self.lock();
                let now = Instant::now();
                s.shared_until = Some(now + s.interval * 2);
                Shared::Alone
            }
        }
    }

    fn complete(&self, seq: u64, headers: Option<RateHeaders>, throttled: bool) {
        let (remaining, daily) = {
            let mut s = self.lock();
            s.complete(seq, headers, throttled, Instant::now());
            (
                s.remaining_estimate(),
                s.daily_estimate(Instant::now(), &self.config),
            )
        };
        if let Some(r) = remaining {
            metrics::gauge!("ges_ghl_rate_remaining", "location" => self.key.resource.clone())
                .set(f64::from(r));
        }
        if let Some(d) = daily {
            metrics::gauge!("ges_ghl_daily_remaining", "location" => self.key.resource.clone())
                .set(d as f64);
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        self.lock().interval
    }

    fn snapshot(&self) -> BudgetSnapshot {
        let now = Instant::now();
        let mut s = self.lock();
        s.trim(now);
        let waiting = |p: Priority| count_u32(s.waiters.keys().filter(|(q, _)| *q == p).count());
        BudgetSnapshot {
            app: self.key.app.clone(),
            resource: self.key.resource.clone(),
            max: s.max,
            interval: s.interval,
            used: count_u32(s.held.len() + s.in_flight.len()),
            in_flight: count_u32(s.in_flight.len()),
            remaining: s.remaining_estimate(),
            daily_limit: s.daily_limit,
            daily_remaining: s.daily_estimate(now, &self.config),
            shared: s.shared(now),
            waiting_real_time: waiting(Priority::RealTime),
            waiting_bulk: waiting(Priority::Bulk),
            granted: s.granted,
            throttled: s.throttled,
            others_seen: s.others_seen,
        }
    }
}

/// A place in the queue; leaving it (by success, refusal or cancellation) wakes the others.
struct Queued<'a> {
    budget: &'a Budget,
    ticket: (Priority, u64),
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        if s.waiters.remove(&self.ticket).is_some() {
            // Leaving the head of the queue without a slot: the next one may have a chance.
            s.wake_head();
        }
    }
}

/// One request's slot. Complete it with the answer's headers; dropping it counts as an
/// answer without headers at that moment.
#[derive(Debug)]
pub(crate) struct Permit {
    budget: Arc<Budget>,
    seq: u64,
    /// The slot of the shared window, released with the answer.
    slot: Option<WindowSlot>,
    done: bool,
}

impl Permit {
    pub(crate) fn complete(mut self, headers: Option<RateHeaders>, throttled: bool) {
        self.done = true;
        self.finish(headers, throttled);
    }

    fn finish(&mut self, headers: Option<RateHeaders>, throttled: bool) {
        self.budget.complete(self.seq, headers, throttled);
        let (Some(slot), Some(shared)) = (self.slot.take(), self.budget.shared.clone()) else {
            return;
        };
        // The interval the answer just taught: the slot counts on GHL's side until then.
        let interval = self.budget.interval();
        shared.release(slot, interval);
    }
}

/// Release the answered slots as they come, each batch in one statement per interval.
async fn release_answered(
    window: Arc<dyn RateWindow>,
    mut answered: tokio::sync::mpsc::UnboundedReceiver<(WindowSlot, Duration)>,
) {
    let mut batch = Vec::new();
    while answered.recv_many(&mut batch, RELEASE_BATCH).await > 0 {
        let mut by_interval: BTreeMap<Duration, Vec<WindowSlot>> = BTreeMap::new();
        for (slot, interval) in batch.drain(..) {
            by_interval.entry(interval).or_default().push(slot);
        }
        for (interval, slots) in by_interval {
            if let Err(e) = window.release_many(&slots, interval).await {
                tracing::warn!(
                    slots = slots.len(),
                    error = %e,
                    "slots of the shared rate window were not released; they free when their hold expires"
                );
                metrics::counter!("ges_ghl_window_errors_total", "op" => "release")
                    .increment(slots.len() as u64);
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.finish(None, false);
        }
    }
}

/// What the shared window gave a caller.
enum Shared {
    Slot(WindowSlot),
    /// The window could not be reached: the caller goes by the headers alone.
    Alone,
    /// No slot; one may free in this long.
    FullFor(Duration),
}

/// A caller let through by the local rules, waiting for the shared window. Dropped before the
/// window answered (the caller gave up), its local slot is freed as if answered then; a slot
/// the window gave meanwhile frees when its hold expires.
struct Pending<'a> {
    budget: &'a Budget,
    seq: Option<u64>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(seq) = self.seq.take() {
            self.budget.complete(seq, None, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    fn config(max: u32, interval_ms: u64) -> RateConfig {
        RateConfig {
            max,
            interval: Duration::from_millis(interval_ms),
            daily_limit: 1_000,
            shared_reserve: 0.2,
            daily_bulk_reserve: 10,
            daily_recheck: Duration::from_secs(60),
            probe_first: false,
            newcomer_room: 2,
            realtime_share: 0.0,
        }
    }

    fn budget(max: u32, interval_ms: u64) -> Arc<Budget> {
        Arc::new(Budget::new(
            BudgetKey::new("app", "loc"),
            config(max, interval_ms),
            None,
        ))
    }

    fn headers(max: u32, remaining: u32, daily: u64) -> Option<RateHeaders> {
        Some(RateHeaders {
            limit_daily: Some(1_000),
            daily_remaining: Some(daily),
            interval: None,
            max: Some(max),
            remaining: Some(remaining),
        })
    }

    async fn until(budget: &Budget, cond: impl Fn(&BudgetSnapshot) -> bool) {
        for _ in 0..10_000 {
            if cond(&budget.snapshot()) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition never held: {:?}", budget.snapshot());
    }

    #[test]
    fn headers_are_read_when_present() {
        let mut h = HeaderMap::new();
        assert_eq!(RateHeaders::from_headers(&h), None);
        h.insert("x-ratelimit-remaining", "7".parse().unwrap());
        h.insert("x-ratelimit-max", "100".parse().unwrap());
        h.insert(
            "x-ratelimit-interval-milliseconds",
            "10000".parse().unwrap(),
        );
        h.insert("x-ratelimit-daily-remaining", "199990".parse().unwrap());
        h.insert("x-ratelimit-limit-daily", "200000".parse().unwrap());
        let r = RateHeaders::from_headers(&h).unwrap();
        assert_eq!(r.remaining, Some(7));
        assert_eq!(r.max, Some(100));
        assert_eq!(r.interval, Some(Duration::from_secs(10)));
        assert_eq!(r.daily_remaining, Some(199_990));
        assert_eq!(r.limit_daily, Some(200_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_frees_one_interval_after_its_answer() {
        let b = budget(2, 100);
        let t0 = Instant::now();
        let p1 = b.acquire(Priority::Bulk).await.unwrap();
        let p2 = b.acquire(Priority::Bulk).await.unwrap();
        tokio::time::advance(Duration::from_millis(30)).await;
        p1.complete(None, false);
        p2.complete(None, false);
        let _p3 = b.acquire(Priority::Bulk).await.unwrap();
        assert!(Instant::now() - t0 >= Duration::from_millis(130));
    }

    #[tokio::test(start_paused = true)]
    async fn real_time_goes_before_bulk() {
        let b = budget(1, 100);
        let first = b.acquire(Priority::Bulk).await.unwrap();
        let order = Arc::new(StdMutex::new(Vec::new()));
        let spawn = |p: Priority, label: &'static str| {
            let (b, order) = (b.clone(), order.clone());
            tokio::spawn(async move {
                let permit = b.acquire(p).await.unwrap();
                order.lock().unwrap().push(label);
                permit.complete(None, false);
            })
        };
        let bulk = spawn(Priority::Bulk, "bulk");
        until(&b, |s| s.waiting_bulk == 1).await;
        let rt = spawn(Priority::RealTime, "real-time");
        until(&b, |s| s.waiting_real_time == 1).await;
        first.complete(None, false);
        bulk.await.unwrap();
        rt.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["real-time", "bulk"]);
    }

    #[tokio::test(start_paused = true)]
    async fn someone_else_using_the_budget_makes_us_wait_for_the_interval() {
        let b = budget(10, 100);
        let p = b.acquire(Priority::Bulk).await.unwrap();
        // The server counted 9 requests; we sent one: another client sent the rest.
        p.complete(headers(10, 1, 500), false);
        assert!(b.snapshot().shared);
        let t0 = Instant::now();
        let _next = b.acquire(Priority::RealTime).await.unwrap();
        assert!(Instant::now() - t0 >= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_calls_leave_the_real_time_room_free() {
        let b = Arc::new(Budget::new(
            BudgetKey::new("app", "loc"),
            RateConfig {
                realtime_share: 0.2,
                ..config(10, 100)
            },
            None,
        ));
        let t0 = Instant::now();
        // A backfill alone fills the window but the real-time room (2 of 10).
        for i in 0..8u32 {
            let p = b.acquire(Priority::Bulk).await.unwrap();
            p.complete(headers(10, 9 - i, 500), false);
        }
        assert_eq!(Instant::now(), t0);
        let waiting_bulk = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire(Priority::Bulk).await.map(|_| Instant::now()) })
        };
        until(&b, |s| s.waiting_bulk == 1).await;
        // A webhook's two calls go at once.
        for i in 0..2u32 {
            let p = b.acquire(Priority::RealTime).await.unwrap();
            p.complete(headers(10, 1 - i, 500), false);
        }
        assert_eq!(Instant::now(), t0, "the real-time calls did not wait");
        // The ninth bulk call waited for the window's first slot to free.
        let ninth = waiting_bulk.await.unwrap().unwrap();
        assert!(ninth - t0 >= Duration::from_millis(100));
    }

    /// A shared window in memory, on Tokio's clock: what the store's `rate_window` does.
    #[derive(Default)]
    struct MemWindow {
        slots: StdMutex<Vec<(Option<Instant>, String)>>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl RateWindow for MemWindow {
        async fn take(
            &self,
            key: &WindowKey,
            max: u32,
            leave_free: u32,
            hold: Duration,
            holder: &str,
        ) -> Result<Taken, ports::StoreError> {
            // A round trip: other callers run meanwhile.
            for _ in 0..2 {
                tokio::task::yield_now().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(ports::StoreError::Unavailable {
                    message: "the database is down".into(),
                    source: None,
                });
            }
            let now = Instant::now();
            let mut slots = self.slots.lock().unwrap();
            slots.resize(max as usize, (None, String::new()));
            let is_free = |f: &Option<Instant>| f.is_none_or(|f| f <= now);
            let free = slots.iter().filter(|(f, _)| is_free(f)).count();
            if free > leave_free as usize {
                let i = slots.iter().position(|(f, _)| is_free(f)).unwrap();
                slots[i] = (Some(now + hold), holder.to_owned());
                return Ok(Taken::Slot(WindowSlot {
                    key: key.clone(),
                    slot: i as u32,
                    holder: holder.to_owned(),
                }));
            }
            let mut at: Vec<Instant> = slots.iter().map(|(f, _)| f.unwrap_or(now)).collect();
            at.sort();
            Ok(Taken::Full {
                next_free_in: at[leave_free as usize].saturating_duration_since(now),
            })
        }

        async fn release(
            &self,
            slot: &WindowSlot,
            interval: Duration,
        ) -> Result<(), ports::StoreError> {
            let mut slots = self.slots.lock().unwrap();
            let s = &mut slots[slot.slot as usize];
            if s.1 == slot.holder {
                s.0 = Some(Instant::now() + interval);
            }
            Ok(())
        }
    }

    /// A budget of `window`, as one replica of several has.
    fn replica(window: &Arc<MemWindow>, max: u32, interval_ms: u64) -> Arc<Budget> {
        replica_with(window, config(max, interval_ms))
    }

    fn replica_with(window: &Arc<MemWindow>, config: RateConfig) -> Arc<Budget> {
        let shared = SharedWindow::new(
            window.clone(),
            format!("{:x}", rand::random::<u32>()),
            Duration::from_secs(30),
        );
        Arc::new(Budget::new(
            BudgetKey::new("app", "loc"),
            config,
            Some(Arc::new(shared)),
        ))
    }

    /// A fresh replica's first (bulk) call finds the window full and goes back in line while
    /// a webhook's call waits for that first answer (the probe): the webhook's call must look
    /// again, or both wait for each other for ever.
    #[tokio::test(start_paused = true)]
    async fn a_fresh_replica_finding_the_window_full_does_not_stall() {
        let window = Arc::new(MemWindow::default());
        let a = replica(&window, 10, 100);
        for i in 0..10u32 {
            let p = a.acquire(Priority::Bulk).await.unwrap();
            p.complete(headers(10, 9 - i, 500), false);
        }
        let b = replica_with(
            &window,
            RateConfig {
                probe_first: true,
                ..config(10, 100)
            },
        );
        let call = |p: Priority| {
            let b = b.clone();
            tokio::spawn(async move {
                let permit = b.acquire(p).await.unwrap();
                permit.complete(headers(10, 0, 500), false);
            })
        };
        let bulk = call(Priority::Bulk);
        tokio::task::yield_now().await;
        let webhook = call(Priority::RealTime);
        let both = async {
            bulk.await.unwrap();
            webhook.await.unwrap();
        };
        tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .expect("both calls went once the window had room");
    }

    #[tokio::test(start_paused = true)]
    async fn replicas_sharing_a_window_use_it_whole_and_no_more() {
        let window = Arc::new(MemWindow::default());
        let (a, b) = (replica(&window, 10, 100), replica(&window, 10, 100));
        let t0 = Instant::now();
        // Replica A takes the whole window at once; the server counts its ten.
        for i in 0..10u32 {
            let p = a.acquire(Priority::Bulk).await.unwrap();
            p.complete(headers(10, 9 - i, 500), false);
        }
        assert_eq!(Instant::now(), t0);
        // Replica B has sent nothing, yet the window is full: it waits for A's first slot.
        let p = b.acquire(Priority::Bulk).await.unwrap();
        let waited = Instant::now() - t0;
        assert!(
            waited >= Duration::from_millis(100) && waited <= Duration::from_millis(130),
            "B waited for the first slot to free, and no longer: {waited:?}"
        );
        // B's answer shows A's ten requests still counted: another client, but one that
        // takes its slots from the window too, so B does not hold back for it.
        p.complete(headers(10, 0, 500), false);
        let seen = b.snapshot();
        assert!(seen.others_seen > 0, "{seen:?}");
        assert!(!seen.shared, "no share left to the others: {seen:?}");
        // A gets the slots as they free (its own interval passed), all ten of them but B's.
        let mut more = 0;
        while Instant::now() - t0 < Duration::from_millis(150) {
            let p =
                tokio::time::timeout_at(t0 + Duration::from_millis(150), a.acquire(Priority::Bulk))
                    .await;
            let Ok(p) = p else { break };
            p.unwrap().complete(headers(10, 0, 500), false);
            more += 1;
        }
        assert_eq!(more, 9, "the window's ten slots, less the one B holds");
    }

    #[tokio::test(start_paused = true)]
    async fn without_its_window_a_replica_goes_by_the_headers() {
        let window = Arc::new(MemWindow::default());
        let a = replica(&window, 10, 100);
        window.down.store(true, Ordering::SeqCst);
        let p = a.acquire(Priority::RealTime).await.unwrap();
        assert!(
            a.snapshot().shared,
            "it holds back as when another client is seen"
        );
        p.complete(headers(10, 9, 500), false);
        window.down.store(false, Ordering::SeqCst);
    }

    #[tokio::test(start_paused = true)]
    async fn alone_we_use_the_whole_window() {
        let b = budget(10, 100);
        let t0 = Instant::now();
        for i in 0..10u32 {
            let p = b.acquire(Priority::Bulk).await.unwrap();
            p.complete(headers(10, 9 - i, 500), false);
        }
        assert!(!b.snapshot().shared);
        assert_eq!(Instant::now(), t0, "ten requests without waiting");
        let _eleventh = b.acquire(Priority::Bulk).await.unwrap();
        assert!(Instant::now() - t0 >= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_count_frees_slots_our_own_log_still_holds() {
        let b = budget(10, 100);
        let early: Vec<Permit> = {
            let mut v = Vec::new();
            for _ in 0..9 {
                v.push(b.acquire(Priority::Bulk).await.unwrap());
            }
            v
        };
        for p in early {
            p.complete(headers(10, 5, 500), false);
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        // Sent after the nine were answered; the server saw only itself in its window: the
        // nine arrived more than an interval before it (their answers were slow).
        let last = b.acquire(Priority::Bulk).await.unwrap();
        last.complete(headers(10, 9, 500), false);
        let t0 = Instant::now();
        for _ in 0..9 {
            b.acquire(Priority::Bulk)
                .await
                .unwrap()
                .complete(None, false);
        }
        assert_eq!(Instant::now(), t0, "nine slots were free on the server");
        assert_eq!(b.snapshot().others_seen, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_budget_probes_once_before_it_sends_more() {
        let b = Arc::new(Budget::new(
            BudgetKey::new("app", "loc"),
            RateConfig {
                probe_first: true,
                ..config(10, 100)
            },
            None,
        ));
        let probe = b.acquire(Priority::Bulk).await.unwrap();
        let second = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire(Priority::Bulk).await.unwrap() })
        };
        until(&b, |s| s.waiting_bulk == 1).await;
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(
            b.snapshot().waiting_bulk,
            1,
            "held back until the probe is answered"
        );
        // The answer says another client spent 6 of the 10: from now on the budget is shared.
        probe.complete(headers(10, 3, 500), false);
        let _second = second.await.unwrap();
        assert_eq!(b.snapshot().others_seen, 1);
        assert!(b.snapshot().shared);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_does_not_replace_a_newer_reading() {
        let b = budget(10, 1_000);
        let slow = b.acquire(Priority::Bulk).await.unwrap();
        tokio::time::advance(Duration::from_millis(1)).await;
        let fast = b.acquire(Priority::Bulk).await.unwrap();
        // The later request sees the window nearly full: others are spending it.
        fast.complete(headers(10, 2, 500), false);
        assert!(b.snapshot().shared);
        // The earlier one comes back late with the window as it was at its arrival.
        slow.complete(headers(10, 9, 500), false);
        let s = b.snapshot();
        assert!(
            s.remaining.is_some_and(|r| r <= 2),
            "the stale reading won: {s:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn once_others_were_seen_a_few_slots_stay_free_for_a_newcomer() {
        let b = budget(100, 1_000);
        // Another replica was seen once; two quiet intervals later this one is alone.
        b.acquire(Priority::Bulk)
            .await
            .unwrap()
            .complete(headers(100, 50, 5_000), false);
        tokio::time::advance(Duration::from_millis(3_000)).await;
        let t0 = Instant::now();
        for i in 0..98u32 {
            b.acquire(Priority::Bulk)
                .await
                .unwrap()
                .complete(headers(100, 99 - i, 5_000), false);
        }
        assert_eq!(Instant::now(), t0, "98 requests without waiting");
        assert!(!b.snapshot().shared);
        let _99th = b.acquire(Priority::Bulk).await.unwrap();
        assert!(
            Instant::now() - t0 >= Duration::from_millis(1_000),
            "the last two slots of the window stay free"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_waits_for_the_interval_even_without_headers() {
        let b = budget(10, 100);
        let p = b.acquire(Priority::Bulk).await.unwrap();
        p.complete(None, true);
        let t0 = Instant::now();
        let _p = b.acquire(Priority::Bulk).await.unwrap();
        assert!(Instant::now() - t0 >= Duration::from_millis(100));
        assert_eq!(b.snapshot().throttled, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_daily_budget_is_kept_for_real_time_calls() {
        let b = budget(10, 100);
        let p = b.acquire(Priority::Bulk).await.unwrap();
        p.complete(headers(10, 9, 5), false);
        assert!(matches!(
            b.acquire(Priority::Bulk).await,
            Err(ApiError::RateLimited { .. })
        ));
        let p = b.acquire(Priority::RealTime).await.unwrap();
        p.complete(headers(10, 8, 0), false);
        assert!(b.acquire(Priority::RealTime).await.is_err());
        // After the recheck period one call goes through to read the headers again.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(b.acquire(Priority::RealTime).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let b = budget(1, 100);
        let _held = b.acquire(Priority::Bulk).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(10), b.acquire(Priority::Bulk));
        assert!(waiting.await.is_err());
        assert_eq!(b.snapshot().waiting_bulk, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_permit_releases_its_slot_later() {
        let b = budget(1, 100);
        let t0 = Instant::now();
        drop(b.acquire(Priority::Bulk).await.unwrap());
        let _p = b.acquire(Priority::Bulk).await.unwrap();
        assert!(Instant::now() - t0 >= Duration::from_millis(100));
    }
}
