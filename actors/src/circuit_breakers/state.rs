//! The circuit breaker of one deployment, as a pure state machine: no
//! actix, no I/O, time passed in, so it is tested on a paused clock.
//!
//! Closed → Open when, within the sliding window, failures reach
//! `failure_count` *and* make up at least `failure_ratio` of at least
//! `min_requests` calls. Open lasts a cool-down that doubles (up to
//! `cooldown_max`) each time the circuit re-opens without having closed in
//! between. After the cool-down the circuit is half-open: `half_open_probes`
//! calls may go through; a probe's success closes it, a failure re-opens it.
//! A 429 "cools" the deployment for its Retry-After (capped) without
//! counting as a failure: the provider is healthy, only busy.
//!
//! Half-open never lasts forever. A probe that has not reported within
//! `probe_timeout` (the longest an attempt may take) is lost — its outcome
//! was dropped, or it hangs past every timeout — and counts as a failure:
//! the circuit re-opens. A half-open circuit that sees no traffic for a
//! whole `window` closes: the failures that opened it have aged out of the
//! window, just as they would have in the closed state. The actor ticks
//! every breaker so both happen without traffic.

use std::time::Duration;

use tokio::time::Instant;

/// Tuning of every breaker (config `[breaker]`, per model overrides later).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub window: Duration,
    /// Calls needed in the window before the ratio is considered.
    pub min_requests: u32,
    pub failure_count: u32,
    pub failure_ratio: f64,
    pub cooldown: Duration,
    pub cooldown_max: Duration,
    pub half_open_probes: u32,
    /// Longest Retry-After honoured for a 429 cool-down.
    pub retry_after_cap: Duration,
    /// A half-open probe not reported within this long is lost (a failure).
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(30),
            min_requests: 5,
            failure_count: 5,
            failure_ratio: 0.5,
            cooldown: Duration::from_secs(5),
            cooldown_max: Duration::from_secs(120),
            half_open_probes: 1,
            retry_after_cap: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(600),
        }
    }
}

/// What an attempt at a deployment came to, as far as its breaker cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Success,
    /// Connect error, timeout, 5xx, cut stream, invalid response.
    Failure,
    /// 429: cool down for this long (already capped by the caller or not).
    RateLimited {
        retry_after: Option<Duration>,
    },
    /// Client errors and cancellations: not the deployment's fault.
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

/// A state change, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: CircuitState,
    pub to: CircuitState,
}

/// The answer to "may I call this deployment now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Allowed as one of the half-open probes.
    Probe,
    Denied,
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time this bucket counts (window index), to expire it.
    epoch: u64,
    ok: u32,
    failed: u32,
}

/// One deployment's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: CircuitState,
    buckets: [Bucket; BUCKETS],
    /// Open until then (Open), or when the last open began (for status).
    open_until: Instant,
    /// When the circuit last opened.
    opened_at: Instant,
    /// Opens since the circuit last closed: the cool-down doubles with each.
    consecutive_opens: u32,
    probes_left: u32,
    probes_inflight: u32,
    /// Half-open: when a probe was last admitted or reported (or the
    /// circuit turned half-open), for the probe and idle timeouts.
    half_open_activity: Instant,
    /// Half-open: when the latest probe still in flight was admitted.
    probe_admitted: Instant,
    /// 429 cool-down: skipped until then, whatever the circuit says.
    cooling_until: Option<Instant>,
    pub opens_total: u64,
    pub failures_total: u64,
    pub successes_total: u64,
    pub rate_limited_total: u64,
    /// Half-open probes that never reported (counted as failures).
    pub probes_lost_total: u64,
    last_change: Instant,
    origin: Instant,
}

impl Breaker {
    pub fn new(now: Instant) -> Breaker {
        Breaker {
            state: CircuitState::Closed,
            buckets: [Bucket::default(); BUCKETS],
            open_until: now,
            opened_at: now,
            consecutive_opens: 0,
            probes_left: 0,
            probes_inflight: 0,
            half_open_activity: now,
            probe_admitted: now,
            cooling_until: None,
            opens_total: 0,
            failures_total: 0,
            successes_total: 0,
            rate_limited_total: 0,
            probes_lost_total: 0,
            last_change: now,
            origin: now,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    pub fn open_until(&self) -> Instant {
        self.open_until
    }

    /// When the circuit last opened (meaningful while open or half-open).
    pub fn opened_at(&self) -> Instant {
        self.opened_at
    }

    pub fn cooling_until(&self, now: Instant) -> Option<Instant> {
        self.cooling_until.filter(|u| *u > now)
    }

    pub fn last_change(&self) -> Instant {
        self.last_change
    }

    /// The state as of `now`, read without moving it: an open circuit whose
    /// cool-down is over reads as half-open. It becomes half-open for real
    /// at its next admission or outcome, which records the transition (a
    /// status read must neither change state nor lose a transition).
    pub fn state_at(&self, now: Instant) -> CircuitState {
        if self.state == CircuitState::Open && now >= self.open_until { CircuitState::HalfOpen } else { self.state }
    }

    /// When the state [`Breaker::state_at`] reads began.
    pub fn changed_at(&self, now: Instant) -> Instant {
        if self.state_at(now) != self.state { self.open_until } else { self.last_change }
    }

    /// Skip this deployment until `until` on another replica's word (shared
    /// mode's news): a cool-down of the gate only. The breaker's own state
    /// and window are untouched, so this replica still decides for itself
    /// once the time is up.
    pub fn hold_off(&mut self, until: Instant) {
        self.cooling_until = Some(self.cooling_until.map_or(until, |u| u.max(until)));
    }

    fn epoch(&self, cfg: &BreakerConfig, now: Instant) -> u64 {
        let slice = (cfg.window.as_nanos() / BUCKETS as u128).max(1);
        (now.saturating_duration_since(self.origin).as_nanos() / slice) as u64
    }

    /// (ok, failed) within the window.
    pub fn window_counts(&self, cfg: &BreakerConfig, now: Instant) -> (u32, u32) {
        let e = self.epoch(cfg, now);
        self.buckets
            .iter()
            .filter(|b| e.saturating_sub(b.epoch) < BUCKETS as u64 && b.epoch <= e)
            .fold((0, 0), |(o, f), b| (o + b.ok, f + b.failed))
    }

    fn record(&mut self, cfg: &BreakerConfig, now: Instant, ok: bool) {
        let e = self.epoch(cfg, now);
        let b = &mut self.buckets[(e % BUCKETS as u64) as usize];
        if b.epoch != e {
            *b = Bucket { epoch: e, ok: 0, failed: 0 };
        }
        if ok {
            b.ok += 1;
        } else {
            b.failed += 1;
        }
    }

    fn change(&mut self, to: CircuitState, now: Instant) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.last_change = now;
        Some(Transition { from, to })
    }

    fn open(&mut self, cfg: &BreakerConfig, now: Instant) -> Option<Transition> {
        let factor = 2u32.saturating_pow(self.consecutive_opens.min(16));
        let cooldown = cfg.cooldown.saturating_mul(factor).min(cfg.cooldown_max);
        self.consecutive_opens = self.consecutive_opens.saturating_add(1);
        self.open_until = now + cooldown;
        self.opened_at = now;
        self.opens_total += 1;
        self.probes_left = 0;
        self.probes_inflight = 0;
        self.change(CircuitState::Open, now)
    }

    fn close(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_opens = 0;
        self.buckets = [Bucket::default(); BUCKETS];
        self.probes_left = 0;
        self.probes_inflight = 0;
        self.change(CircuitState::Closed, now)
    }

    /// Move on with time alone: Open → HalfOpen once the cool-down is over;
    /// HalfOpen → Open when a probe is lost, → Closed after a window with
    /// no traffic (see the module's doc).
    pub fn tick(&mut self, cfg: &BreakerConfig, now: Instant) -> Option<Transition> {
        match self.state {
            CircuitState::Open if now >= self.open_until => {
                self.probes_left = cfg.half_open_probes.max(1);
                self.probes_inflight = 0;
                self.half_open_activity = now;
                self.change(CircuitState::HalfOpen, now)
            }
            CircuitState::HalfOpen if self.probes_inflight > 0 => {
                if now.saturating_duration_since(self.probe_admitted) >= cfg.probe_timeout {
                    self.failures_total += 1;
                    self.probes_lost_total += 1;
                    return self.open(cfg, now);
                }
                None
            }
            CircuitState::HalfOpen if now.saturating_duration_since(self.half_open_activity) >= cfg.window => {
                self.close(now)
            }
            CircuitState::Closed | CircuitState::Open | CircuitState::HalfOpen => None,
        }
    }

    /// A probe slot given back (its attempt told nothing about the deployment).
    fn probe_returned(&mut self, cfg: &BreakerConfig, now: Instant) {
        if self.state == CircuitState::HalfOpen {
            self.probes_inflight = self.probes_inflight.saturating_sub(1);
            self.probes_left = self.probes_left.saturating_add(1).min(cfg.half_open_probes.max(1));
            self.half_open_activity = now;
        }
    }

    /// May a request go to this deployment now? Takes a probe slot when
    /// half-open.
    pub fn admit(&mut self, cfg: &BreakerConfig, now: Instant) -> (Admission, Option<Transition>) {
        let t = self.tick(cfg, now);
        if self.cooling_until(now).is_some() {
            return (Admission::Denied, t);
        }
        let a = match self.state {
            CircuitState::Closed => Admission::Allowed,
            CircuitState::Open => Admission::Denied,
            CircuitState::HalfOpen => {
                if self.probes_left > 0 {
                    self.probes_left -= 1;
                    self.probes_inflight += 1;
                    self.probe_admitted = now;
                    self.half_open_activity = now;
                    Admission::Probe
                } else {
                    Admission::Denied
                }
            }
        };
        (a, t)
    }

    /// Take an attempt's outcome into account.
    pub fn on_outcome(&mut self, cfg: &BreakerConfig, now: Instant, v: Verdict) -> Option<Transition> {
        let t0 = self.tick(cfg, now);
        let t = match v {
            Verdict::Neutral => {
                // A probe that told us nothing: let another one through.
                self.probe_returned(cfg, now);
                None
            }
            Verdict::RateLimited { retry_after } => {
                self.rate_limited_total += 1;
                let d = retry_after.unwrap_or(Duration::from_secs(1)).min(cfg.retry_after_cap);
                let until = now + d;
                self.cooling_until = Some(self.cooling_until.map_or(until, |u| u.max(until)));
                self.probe_returned(cfg, now);
                None
            }
            Verdict::Success => {
                self.successes_total += 1;
                match self.state {
                    CircuitState::HalfOpen => self.close(now),
                    CircuitState::Closed => {
                        self.record(cfg, now, true);
                        None
                    }
                    // A late success of a call admitted before the circuit
                    // opened: the circuit stays open until its probes say so.
                    CircuitState::Open => None,
                }
            }
            Verdict::Failure => {
                self.failures_total += 1;
                match self.state {
                    CircuitState::HalfOpen => self.open(cfg, now),
                    CircuitState::Closed => {
                        self.record(cfg, now, false);
                        let (ok, failed) = self.window_counts(cfg, now);
                        let total = ok + failed;
                        if failed >= cfg.failure_count
                            && total >= cfg.min_requests
                            && f64::from(failed) >= cfg.failure_ratio * f64::from(total)
                        {
                            self.open(cfg, now)
                        } else {
                            None
                        }
                    }
                    CircuitState::Open => None,
                }
            }
        };
        t.or(t0)
    }
}

/// Which 429 cool-downs are worth telling the other replicas: one message
/// per change, not one per 429 (a burst of 429s is one message).
#[derive(Debug, Clone)]
pub struct CoolingNews {
    /// The cool-down end last announced (or heard) per deployment.
    last: Vec<Option<Instant>>,
}

/// A cool-down that ends at most this much later than the one last
/// announced is not news.
const NEWS_SLACK: Duration = Duration::from_millis(250);

impl CoolingNews {
    pub fn new(deployments: usize) -> CoolingNews {
        CoolingNews { last: vec![None; deployments] }
    }

    /// Cover deployment ids `0..n`.
    pub fn grow_to(&mut self, n: usize) {
        if self.last.len() < n {
            self.last.resize(n, None);
        }
    }

    /// `deployment` now cools until `until`: announce it? Remembers it if so.
    pub fn due(&mut self, deployment: usize, until: Instant) -> bool {
        let Some(last) = self.last.get_mut(deployment) else { return false };
        if last.is_some_and(|l| until <= l + NEWS_SLACK) {
            return false;
        }
        *last = Some(until);
        true
    }

    /// Heard from another replica (news it sent): not to be announced again.
    pub fn heard(&mut self, deployment: usize, until: Option<Instant>) {
        if let Some(l) = self.last.get_mut(deployment) {
            *l = until;
        }
    }
}

#[cfg(test)]
mod tests;
